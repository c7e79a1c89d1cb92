"""The gpt_pretrain task: true-byte bpb, book split, cached prepare and pins, a real cpu-tiny trial, parse()."""
from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recur.core.records import CRASH, NAN, OK, OOM, TIMEOUT
from recur.core.task import TaskError
from recur.tasks.gpt_pretrain import prepare as prep
from recur.tasks.gpt_pretrain.task import SPACES, GptPretrainTask

VAL_BOOKS = ["2 Samuel", "Proverbs", "Amos", "Matthew", "Philippians", "1 Peter"]


class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token distribution is the same at every position: softmax(logits)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, idx):
        return self.logits.expand(idx.shape[0], idx.shape[1], -1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def kjv_worktree(tmp_path_factory, cache):
    """A populated and prepared cpu-tiny worktree on the default corpus (shared by the slower tests)."""
    task = GptPretrainTask("cpu-tiny", {"cache_dir": str(cache)})
    folder = tmp_path_factory.mktemp("wt")
    task.populate(folder)
    started = time.perf_counter()
    task.prepare(folder, None)
    return task, folder, time.perf_counter() - started


# -- bits per byte ---------------------------------------------------------------------------------------------


def test_bpb_byte_vocabulary_matches_hand_computation():
    text = "aé€😀 ok"  # 1 + 2 + 3 + 4 + 3 bytes = 13 bytes, 7 characters
    raw = text.encode("utf-8")
    assert (len(raw), len(text)) == (13, 7)
    tokens = np.frombuffer(raw, dtype=np.uint8)
    probs = np.full(256, 0.5 / 255)
    probs[ord("a")] = 0.5
    model = FixedLogits(np.log(probs))
    bpb, nats, nbytes = prep.bits_per_byte(model, tokens, np.ones(256, dtype=np.int64), seq_len=12, n_windows=1)
    # targets are bytes 1..12 (the first byte is context only); none of them is "a"
    expected_nats = 12 * -math.log(0.5 / 255)
    assert nbytes == 12
    assert nats == pytest.approx(expected_nats, rel=1e-5)
    assert bpb == pytest.approx(expected_nats / math.log(2) / 12, rel=1e-5)


def test_bpb_bpe_counts_true_utf8_bytes():
    corpus = ("Grüße aus Köln, naïve café. 世界你好，世界。 Ελληνικά κείμενα. 😀 emoji 🎉!\n" * 40
              + "plain English words and more plain words\n" * 40)
    tok = prep.train_bpe(corpus, vocab_size=400)
    token_bytes = prep.bpe_token_bytes(tok)
    val_text = "\nGrüße, 世界! naïve café 😀🎉 Ωμέγα\n"
    ids = prep._encode_bpe(tok, val_text)
    assert tok.decode(ids.tolist()) == val_text
    # every token maps to its exact byte count: the sum is the text's UTF-8 length, not its characters or tokens
    assert int(token_bytes[ids].sum()) == len(val_text.encode("utf-8"))
    assert len(val_text.encode("utf-8")) != len(val_text)
    assert token_bytes[ids[0]] == 1  # "\n" is its own token and is never predicted
    vocab = tok.get_vocab_size()
    model = FixedLogits(np.zeros(vocab))  # uniform: every target costs ln(vocab) nats
    n = len(ids)
    bpb, nats, nbytes = prep.bits_per_byte(model, ids, token_bytes, seq_len=n - 1, n_windows=1)
    assert nbytes == len(val_text.encode("utf-8")) - 1
    assert nats == pytest.approx((n - 1) * math.log(vocab), rel=1e-5)
    assert bpb == pytest.approx((n - 1) * math.log2(vocab) / (len(val_text.encode("utf-8")) - 1), rel=1e-5)


def test_eval_windows_are_fixed_and_never_share_a_target():
    starts = prep.eval_windows(10_000, 256, 20)
    assert np.array_equal(starts, prep.eval_windows(10_000, 256, 20))
    assert starts[0] == 0 and starts[-1] == 10_000 - 257
    assert np.all(np.diff(starts) >= 256)
    assert len(prep.eval_windows(1000, 256, 99)) == 3  # capped by what fits without overlap


# -- corpus and split ------------------------------------------------------------------------------------------


def test_kjv_book_split_is_deterministic_and_disjoint():
    books = prep.kjv_books()
    assert len(books) == 66 and books[0][1] == "Genesis" and books[-1][1] == "Revelation"
    assert books[0][2].lstrip().startswith("In the beginning God created the heaven and the earth.")
    train, val, names = prep.split_kjv(books)
    assert names == VAL_BOOKS
    assert (train, val, names) == prep.split_kjv(prep.kjv_books())
    held = {b[0] for b in books if b[1] in names}
    assert held == {10, 20, 30, 40, 50, 60}
    assert val == "".join(b[2] for b in books if b[0] in held)
    assert train == "".join(b[2] for b in books if b[0] not in held)
    assert len(train) + len(val) == sum(len(b[2]) for b in books)
    assert 0.05 <= len(val) / (len(train) + len(val)) <= 0.10
    assert "The proverbs of Solomon the son of David" in val and "The proverbs of Solomon the son of David" not in train


def test_single_file_split_is_on_a_line_break():
    text = "".join(f"line {i} ünïcödé\n" for i in range(200))
    train, val, _ = prep.split_files([("only.txt", text)])
    assert train + val == text and train.endswith("\n") and val.startswith("line ")
    assert 0.05 <= len(val.encode()) / len(text.encode()) <= 0.15
    assert (train, val) == prep.split_files([("only.txt", text)])[:2]


# -- prepare, cache, pins --------------------------------------------------------------------------------------


def test_prepare_caches_and_pins_follow_prepare_py(kjv_worktree, cache):
    task, folder, first_seconds = kjv_worktree
    data = task.data_dir(cache)
    meta = (data / "meta.json").read_text()
    stamp = (data / "val.npy").stat().st_mtime_ns
    again = GptPretrainTask("cpu-tiny", {"cache_dir": str(cache)})
    started = time.perf_counter()
    again.prepare(folder, None)
    assert time.perf_counter() - started < 0.5  # reused, not rebuilt
    assert (data / "val.npy").stat().st_mtime_ns == stamp and (data / "meta.json").read_text() == meta
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]
    val = np.load(data / "val.npy")
    assert val.dtype == np.uint8 and len(val) == json.loads(meta)["val_bytes"]

    pins = task.pins(folder)
    assert set(pins) >= {"prepare.py", "tokenizer", "val_shard"}
    assert pins == again.pins(folder)
    (folder / "prepare.py").write_text((folder / "prepare.py").read_text() + "\n# edited\n")
    try:
        edited = task.pins(folder)
        assert edited["prepare.py"] != pins["prepare.py"]
        assert {k: v for k, v in edited.items() if k != "prepare.py"} == {k: v for k, v in pins.items() if k != "prepare.py"}
    finally:
        task.populate(folder)
    assert task.pins(folder) == pins


def test_space_matches_train_py_constants_for_every_preset(tmp_path):
    for preset in GptPretrainTask.presets:
        task = GptPretrainTask(preset)
        folder = tmp_path / preset
        task.populate(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["prepare.py", "train.py"]
        consts = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse((folder / "train.py").read_text()).body
                  if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id.isupper()
                  and not n.targets[0].id.startswith("_")}
        space = task.space()
        assert space == SPACES[preset]
        for name, spec in space.items():
            value = consts[name]
            if spec["type"] == "choice":
                assert value in spec["choices"], (preset, name)
            elif spec["type"] == "bool":
                assert isinstance(value, bool), (preset, name)
            else:
                assert type(value) is {"int": int, "float": float}[spec["type"]], (preset, name)
                assert spec["low"] <= value <= spec["high"], (preset, name)
        for spec in space.values():
            if spec["type"] == "choice" and spec is space.get("N_HEAD"):
                assert all(w % h == 0 and (w // h) % 2 == 0 for w in space["N_EMBD"]["choices"] for h in spec["choices"])
    gpu = (tmp_path / "gpu" / "train.py").read_text()
    assert "DEPTH = 8" in gpu and "N_EMBD = 512" in gpu and "COMPILE = True" in gpu
    assert (tmp_path / "gpu" / "prepare.py").read_bytes() == (tmp_path / "cpu-tiny" / "prepare.py").read_bytes()


# -- a real trial ----------------------------------------------------------------------------------------------


def _run(spec):
    proc = subprocess.run(spec.argv, cwd=spec.cwd, env={**os.environ, **spec.env}, capture_output=True, text=True,
                          timeout=spec.deadline_s)
    return proc.stdout + proc.stderr, proc.returncode


@pytest.mark.long(seconds=19)
def test_cpu_tiny_trial_end_to_end(kjv_worktree):
    task, folder, _ = kjv_worktree
    spec = task.trial_spec(folder, seed=3, trial_seconds=4)
    assert spec.argv[1:] == ["train.py"] and spec.cwd == folder
    assert spec.env["RECUR_TRAIN_SECONDS"] == "4.0" and spec.env["RECUR_SEED"] == "3"
    assert spec.deadline_s >= 4 * 1.5 + 60
    started = time.perf_counter()
    log, rc = _run(spec)
    wall = time.perf_counter() - started
    outcome = task.parse(log, rc, False)
    assert outcome.status == OK, log
    assert math.isfinite(outcome.metric) and 0.5 < outcome.metric < 8.5
    assert outcome.info["tokens_per_s"] > 0 and outcome.info["memory_gb"] > 0
    assert outcome.cost["tokens"] > 0
    assert wall < 40, f"a 4 s trial took {wall:.1f} s"
    lines = log.strip().splitlines()
    assert lines[-3].startswith("val_bpb: ") and lines[-2].startswith("peak_memory_gb: ") and lines[-1].startswith("tokens_per_s: ")


# -- parse -----------------------------------------------------------------------------------------------------

OK_LOG = "step 1 | loss 5.5\nnum_steps: 12\ntrain_tokens: 49152\nval_bpb: 3.141500\npeak_memory_gb: 0.512\ntokens_per_s: 12288.0\n"


def test_parse_maps_logs_to_statuses():
    task = GptPretrainTask("cpu-tiny")
    ok = task.parse(OK_LOG, 0, False)
    assert ok.status == OK and ok.metric == pytest.approx(3.1415)
    assert ok.info["memory_gb"] == pytest.approx(0.512) and ok.info["tokens_per_s"] == pytest.approx(12288.0)
    assert ok.cost["tokens"] == 49152
    assert task.parse(OK_LOG + "mfu: 41.5\n", 0, False).info["mfu"] == pytest.approx(41.5)
    assert task.parse("val_bpb: 3.0\nval_bpb: 2.5\n", 0, False).metric == pytest.approx(2.5)  # the last one counts

    crash = task.parse("Traceback (most recent call last):\n  File \"train.py\"\nNameError: name 'x' is not defined\n", 1, False)
    assert crash.status == CRASH and crash.metric is None and "NameError" in crash.info["log_tail"]
    assert task.parse("step 1 | loss 5.5\n", 0, False).status == CRASH  # no metric
    assert task.parse(OK_LOG, 2, False).status == CRASH  # metric but a failing exit code

    nan = task.parse("step 7: loss is nan, stopping\nval_bpb: nan\n", 1, False)
    assert nan.status == NAN and nan.metric is None
    assert task.parse("val_bpb: inf\npeak_memory_gb: 0.1\ntokens_per_s: 5\n", 0, False).status == NAN

    assert task.parse("step 1\nstep 2\n", None, True).status == TIMEOUT
    assert task.parse(OK_LOG, 0, True).status == TIMEOUT

    oom = task.parse("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n", 1, False)
    assert oom.status == OOM and "out of memory" in oom.info["log_tail"]
    assert task.parse("Traceback\nMemoryError\n", 1, False).status == OOM
    assert task.parse("step 1\n", -9, False).status == OOM

    long_log = "\n".join(f"line {i}" for i in range(100)) + "\nboom\n"
    tail = task.parse(long_log, 1, False).info["log_tail"].splitlines()
    assert len(tail) == 20 and tail[-1] == "boom"
    for weird in ("", "val_bpb:", "val_bpb: banana", "\x00\xff", "val_bpb: 1e999"):
        assert task.parse(weird, 0, False).status in (CRASH, NAN)


# -- --data folder ---------------------------------------------------------------------------------------------


def _write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a_first.txt").write_text("".join(f"Erste Datei, Zeile {i}: Grüße und Äpfel.\n" for i in range(150)), encoding="utf-8")
    (folder / "b_second.md").write_text("".join(f"# Section {i}\nSome *markdown* text, café {i}.\n" for i in range(150)), encoding="utf-8")
    (folder / "c_last.txt").write_text("".join(f"最后一个文件 line {i} — the end.\n" for i in range(120)), encoding="utf-8")
    (folder / "ignored.csv").write_text("not,text\n")


def test_data_folder_option_trains_on_own_files(tmp_path):
    data = tmp_path / "mydata"
    _write_corpus(data)
    task = GptPretrainTask("cpu-tiny", {"data": str(data), "cache_dir": str(tmp_path / "cache")})
    folder = tmp_path / "wt"
    task.populate(folder)
    task.prepare(folder, None)
    meta = json.loads((task.data_dir() / "meta.json").read_text())
    assert meta["validation"] == ["c_last.txt"]
    sizes = {p.name: len(p.read_bytes()) for p in data.iterdir() if p.suffix != ".csv"}
    assert meta["val_bytes"] == sizes["c_last.txt"]
    assert meta["train_bytes"] == sizes["a_first.txt"] + sizes["b_second.md"] + 2  # joined by a blank line
    assert task.data_dir().name.startswith("data-") and task.data_dir() != GptPretrainTask("cpu-tiny").data_dir(tmp_path)
    log, rc = _run(task.trial_spec(folder, seed=0, trial_seconds=1))
    outcome = task.parse(log, rc, False)
    assert outcome.status == OK, log
    assert math.isfinite(outcome.metric)

    # changing the files gives a different cache entry
    before = task.data_dir()
    (data / "c_last.txt").write_text((data / "c_last.txt").read_text() + "one more line\n", encoding="utf-8")
    assert GptPretrainTask("cpu-tiny", {"data": str(data), "cache_dir": str(tmp_path / "cache")}).data_dir() != before


def test_data_folder_errors_are_clear(tmp_path):
    with pytest.raises(TaskError, match="does not exist"):
        GptPretrainTask("cpu-tiny", {"data": str(tmp_path / "nope")})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.csv").write_text("a,b\n")
    (empty / "blank.txt").write_text("")
    with pytest.raises(TaskError, match="no non-empty .txt, .md or .parquet files"):
        GptPretrainTask("cpu-tiny", {"data": str(empty)})
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "a.txt").write_text("too short\n")
    task = GptPretrainTask("cpu-tiny", {"data": str(tiny), "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(TaskError, match="too short"):
        task.prepare(tmp_path / "wt", None)
    assert not list((tmp_path / "cache").glob(".tmp*"))
    with pytest.raises(TaskError, match="no preset"):
        GptPretrainTask("huge")


# -- parquet shards and hf: datasets -----------------------------------------------------------------------------


def _write_parquet(path: Path, texts: list[str], column: str = "text") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, "id": list(range(len(texts)))}), path)


def _shard_texts(n: int, tag: str) -> list[str]:
    return [f"Document {tag}-{i}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(60)) + "\n" for i in range(n)]


def test_parquet_rows_are_documents_and_the_last_ones_validate(tmp_path):
    data = tmp_path / "shards"
    _write_parquet(data / "shard_00000.parquet", _shard_texts(40, "a"))
    _write_parquet(data / "shard_00001.parquet", _shard_texts(40, "b"), column="content")  # its only string column
    task = GptPretrainTask("cpu-tiny", {"data": str(data), "cache_dir": str(tmp_path / "cache")})
    folder = tmp_path / "wt"
    task.populate(folder)
    task.prepare(folder, None)
    meta = json.loads((task.data_dir() / "meta.json").read_text())
    texts = _shard_texts(40, "a") + _shard_texts(40, "b")
    held = len(meta["validation"])
    assert meta["validation"] == [f"shard_00001.parquet#{i:09d}" for i in range(40 - held, 40)]
    assert meta["val_bytes"] == len("\n\n".join(texts[-held:]).encode())
    assert meta["train_bytes"] == len("\n\n".join(texts[:-held]).encode())
    log, rc = _run(task.trial_spec(folder, seed=0, trial_seconds=1))
    assert task.parse(log, rc, False).status == OK, log

    import pyarrow as pa
    import pyarrow.parquet as pq
    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"a": ["x"], "b": ["y"]}), tmp_path / "bad" / "two.parquet")
    with pytest.raises(TaskError, match="no 'text' column and not exactly one string column"):
        GptPretrainTask("cpu-tiny", {"data": str(tmp_path / "bad"), "cache_dir": str(tmp_path / "cache")}).prepare(folder, None)


def _hub_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_CACHE": str(tmp_path / "hub"), "RECUR_CACHE_DIR": str(tmp_path / "cache"), **extra}


@pytest.mark.long(seconds=22)
def test_hf_dataset_from_the_hub_cache_offline(tmp_path):
    """``--data hf:OWNER/NAME:PATTERN`` resolves through huggingface_hub's own cache layout (here written by the
    test, as a previous download would have left it) with the hub unreachable: HF_HUB_OFFLINE=1."""
    repo = tmp_path / "hub" / "datasets--someone--tiny-corpus"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for k in range(2):
        _write_parquet(repo / "snapshots" / commit / "data" / f"train-{k:05d}.parquet", _shard_texts(40, str(k)))
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-m", "recur.core.cli", "run", "--task", "gpt_pretrain", "--preset", "cpu-tiny",
                          "--data", "hf:someone/tiny-corpus:data/train-*.parquet", "--model", "scripted",
                          "--max-trials", "2", "--baseline-repeats", "1", "--trial-seconds", "1"],
                         cwd=work, env=_hub_env(tmp_path, HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (meta_path,) = (tmp_path / "cache").glob("data-*/meta.json")
    meta = json.loads(meta_path.read_text())
    assert meta["validation"][-1] == f"data/train-00001.parquet#{39:09d}" and meta["train_bytes"] > 0
    # recur status shows each trial's start-up and passes over the corpus, which the trace now records
    status = subprocess.run([sys.executable, "-m", "recur.core.cli", "status"], cwd=work, env=_hub_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "start-up" in status.stdout and "first trial" in status.stdout and "epochs per trial" in status.stdout


def test_hf_dataset_with_the_hub_unreachable_is_one_clear_line(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    import socket

    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "recur.core.cli", "run", "--task", "gpt_pretrain", "--preset", "cpu-tiny",
                          "--data", "hf:someone/absent", "--model", "scripted", "--max-trials", "4"],
                         cwd=work, env=_hub_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}"),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "cannot reach the Hugging Face hub" in res.stderr and "--data DIR" in res.stderr
    bad = subprocess.run([sys.executable, "-m", "recur.core.cli", "run", "--task", "gpt_pretrain", "--data", "hf:nope",
                          "--model", "scripted", "--max-trials", "4"], cwd=work, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "expected hf:OWNER/NAME" in bad.stderr and "Traceback" not in bad.stderr


def test_gpu_preset_corpus_is_the_installed_python_sources(tmp_path):
    """The gpu preset's default corpus (KJV is seen ~90 times a minute on an H200): this interpreter's
    site-packages .py files in a fixed hashed order, a tenth of the files held out; capped small here."""
    options = {"cache_dir": str(tmp_path / "cache"), "corpus_bytes": 3_000_000}
    task = GptPretrainTask("gpu", options)
    files = prep.site_source_files(3_000_000)
    assert files == prep.site_source_files(3_000_000) and len(files) > 20  # the same list on every call
    assert sum(p.stat().st_size for _, p in files) <= 3_000_000
    assert [n for n, _ in files] != sorted(n for n, _ in files)  # not alphabetical: held-out files span packages
    folder = tmp_path / "wt"
    task.populate(folder)
    task.prepare(folder, None)
    meta = json.loads((task.data_dir() / "meta.json").read_text())
    assert meta["source"].startswith("Python sources of the installed packages")
    assert meta["validation"] and all(name.endswith(".py") for name in meta["validation"])
    docs = prep.site_sources(3_000_000)  # the UTF-8, non-blank ones, in the same order
    assert meta["validation"] == [n for n, _ in docs[-len(meta["validation"]):]]
    assert task.data_dir().name.startswith("pysrc-")
    assert GptPretrainTask("gpu", options).data_dir() == task.data_dir()  # same sources: same cache entry
    spec = task.trial_spec(folder, seed=0, trial_seconds=1)
    assert spec.env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "torch-compile")
    log = f"train_tokens: {meta['train_tokens'] * 3}\nval_bpb: 2.5\n"
    assert task.parse(log, 0, False).info["epochs"] == 3.0  # passes over the training split, in the trace
