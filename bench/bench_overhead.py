"""Framework overhead per level-1 trial and `recur --help` start-up time.

Overhead = wall time of a scripted synthetic run minus the time its trials' subprocesses ran, per trial:
what recur itself adds (policy, trace writes, git commits, scratch folders). Reported as a share of a
cpu-tiny trial (~50 s) and of a 300 s gpu trial. Usage: python bench/bench_overhead.py
"""
from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECUR = shutil.which("recur") or str(Path(sys.executable).parent / "recur")


def help_time(repeats: int = 7) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([RECUR, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def overhead(trials: int = 30) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run([RECUR, "run", "--task", "synthetic", "--model", "scripted", "--max-trials", str(trials)],
                       cwd=d, capture_output=True, check=True)
        wall = time.perf_counter() - t0
        with sqlite3.connect(Path(d) / ".recur" / "trace.db") as conn:
            trial_seconds = conn.execute("SELECT sum(seconds) FROM trials").fetchone()[0]
    return wall, trial_seconds


if __name__ == "__main__":
    h = help_time()
    print(f"recur --help: median {statistics.median(h) * 1000:.0f} ms, min {min(h) * 1000:.0f} ms")
    n = 30
    wall, inside = overhead(n)
    per = (wall - inside) / n
    print(f"synthetic run of {n} trials: wall {wall:.1f} s, inside trials {inside:.1f} s")
    print(f"framework overhead per trial: {per * 1000:.0f} ms "
          f"= {per / 50 * 100:.2f} % of a 50 s cpu-tiny trial, {per / 300 * 100:.3f} % of a 300 s gpu trial")
    print("(includes the run's one-off start: imports, workspace, baseline set-up, spread over the trials)")
