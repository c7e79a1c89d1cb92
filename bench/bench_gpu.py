"""The gpu preset side by side with karpathy/autoresearch's train.py, and warm start across trials.

Here (CPU machine), build what the GPU machine needs, since it has no recur install and no network:

    python bench/bench_gpu.py prepare bench/gpu_run

On the GPU machine (device tool; carry bench/gpu_run and a copy of ../shared/anchors/autoresearch):

    python3 bench/bench_gpu.py measure bench/gpu_run --anchor bench/anchor --seconds 60

``measure`` runs, one after the other on the same GPU: recur's train.py with an empty compile cache (cold), the
same file again from another trial folder with the cache the first one filled (warm: what the second trial of a
run sees), then autoresearch's train.py for the same budget. It prints tokens/s (steady, from the logs), MFU with
exact causal attention for both, start-up seconds and val_bpb, and a last line ``ratio`` = recur / autoresearch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def prepare(out: Path) -> None:
    from recur.tasks.gpt_pretrain.task import GptPretrainTask

    task = GptPretrainTask("gpu", {"cache_dir": str(out / "cache")})
    trial = out / "trial"
    shutil.rmtree(trial, ignore_errors=True)
    task.populate(trial)
    task.prepare(trial, None)
    data = task.data_dir()
    shutil.rmtree(out / "data", ignore_errors=True)
    shutil.copytree(data, out / "data")
    shutil.rmtree(out / "cache", ignore_errors=True)
    print(f"trial files in {trial}, data in {out / 'data'}: {json.loads((out / 'data' / 'meta.json').read_text())['train_tokens']} training tokens")


def _value(log: str, key: str) -> float | None:
    found = re.findall(rf"^\s*{key}:\s*([-+0-9.eE]+|nan)\s*$", log, flags=re.M)
    return float(found[-1]) if found else None


def _run(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    return log.read_text(errors="replace"), time.perf_counter() - t0


def _with_constants(folder: Path, assignments: str) -> None:
    """Set train.py constants in ``folder`` ("BATCH_SIZE=64,LEARNING_RATE=0.003"), as level 1 would edit them."""
    path = folder / "train.py"
    text = path.read_text()
    for item in filter(None, assignments.split(",")):
        name, value = item.split("=", 1)
        text, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value} ", text, flags=re.M)
        if n != 1:
            raise SystemExit(f"no constant {name} in train.py")
    path.write_text(text)


def build_site_corpus(run_dir: Path, corpus_bytes: int) -> Path:
    """The gpu preset's default corpus, built here from this machine's site-packages with the pinned
    prepare.py of the trial folder (this machine has no recur install)."""
    sys.path.insert(0, str((run_dir / "trial").resolve()))
    import prepare

    t0 = time.perf_counter()
    docs = prepare.site_sources(corpus_bytes)
    train, val, names = prepare.split_files(docs)
    target = run_dir / "site-data"
    shutil.rmtree(target, ignore_errors=True)
    meta = prepare.build(target, train, val, tokenizer="bpe", vocab_size=8192, seq_len=2048, eval_windows=512,
                         eval_batch=16, info={"source": f"site-packages of {sys.prefix}", "files": len(docs)})
    print(f"site-packages corpus: {len(docs)} files, {meta['train_tokens']:,} training tokens, "
          f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    return target


def measure(run_dir: Path, anchor: Path | None, seconds: float, out: Path, variants: list[str],
            first_seconds: float | None = None, corpus_bytes: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cache = run_dir / "inductor-cache"
    shutil.rmtree(cache, ignore_errors=True)
    data = build_site_corpus(run_dir, corpus_bytes) if corpus_bytes else run_dir / "data"
    base = {**os.environ, "RECUR_DATA_DIR": str(data.resolve()), "RECUR_SEED": "0",
            "RECUR_TRAIN_SECONDS": repr(float(seconds)), "PYTHONUNBUFFERED": "1",
            "TORCHINDUCTOR_CACHE_DIR": str(cache.resolve())}
    rows = []
    for i, name in enumerate(["recur cold", "recur warm"] + [f"recur {v}" for v in variants]):
        folder = run_dir / f"trial-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(run_dir / "trial", folder)  # a new folder per trial, as recur runs them
        if i >= 2:
            _with_constants(folder, variants[i - 2])
        budget = first_seconds if (i == 0 and first_seconds) else seconds
        log, wall = _run([sys.executable, "train.py"], folder, {**base, "RECUR_TRAIN_SECONDS": repr(float(budget))},
                         out / f"recur_{i}.log", budget * 3 + 600)
        name = f"{name} {budget:g}s"
        rows.append({"name": name, "wall": wall, "tokens_per_s": _value(log, "tokens_per_s"), "mfu": _value(log, "mfu"),
                     "startup": _value(log, "startup_seconds"), "val_bpb": _value(log, "val_bpb"),
                     "peak_gb": _value(log, "peak_memory_gb"), "steps": _value(log, "num_steps")})
        print(rows[-1], flush=True)
    if anchor is not None:
        env = {**os.environ, "AR_TIME_BUDGET": str(int(seconds)), "PYTHONUNBUFFERED": "1"}
        log, wall = _run([sys.executable, "train.py"], anchor, env, out / "autoresearch.log", seconds * 3 + 600)
        rows.append({"name": "autoresearch", "wall": wall, "tokens_per_s": _value(log, "steady_tokens_per_s"),
                     "mfu": _value(log, "mfu_percent"), "startup": _value(log, "setup_seconds_before_loop"),
                     "val_bpb": None, "peak_gb": (_value(log, "peak_vram_mb") or 0) / 1024, "steps": _value(log, "num_steps")})
    (out / "gpu_bench.json").write_text(json.dumps(rows, indent=1))
    print("| run | tokens/s | MFU % | start-up s | val_bpb | peak GiB | steps | wall s |")
    for r in rows:
        f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
        print(f"| {r['name']} | {f(r['tokens_per_s'], 0)} | {f(r['mfu'])} | {f(r['startup'])} | {f(r['val_bpb'], 3)} "
              f"| {f(r['peak_gb'])} | {f(r['steps'], 0)} | {f(r['wall'])} |")
    ours, theirs = rows[1]["tokens_per_s"], rows[-1]["tokens_per_s"] if anchor is not None else None
    if ours and theirs:
        print(f"ratio recur warm / autoresearch tokens/s: {ours / theirs:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    m = sub.add_parser("measure")
    m.add_argument("run_dir", type=Path)
    m.add_argument("--anchor", type=Path)
    m.add_argument("--seconds", type=float, default=60.0)
    m.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_bench_out")))
    m.add_argument("--variant", action="append", default=[], help="train.py constants for one more warm run: K=V,K=V")
    m.add_argument("--first-seconds", type=float, help="budget of the first (cold) run; default --seconds")
    m.add_argument("--corpus-bytes", type=int, default=0, help="build the site-packages corpus of this size here first")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.out)
    else:
        measure(a.run_dir, a.anchor, a.seconds, a.out, a.variant, a.first_seconds, a.corpus_bytes)


if __name__ == "__main__":
    main()
