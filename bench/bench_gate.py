"""The meta-level gate, measured: null promotion rate, power, and level-1 trials per evaluated candidate.

    python bench/bench_gate.py [--null 100] [--power 10] [--workers 2]

* null rate: races of `tests/mechanisms/null/random_select.py` (picks at random among K exchangeable
  proposals; the level's default takes the first) from one start on fresh seeds (window 1, 8 pairs);
* power: `recur mech eval` of the built-in `tpe` (a persistent real gain) on seeds 0..N-1 (window 8, 16
  blocks, no screen: the race alone), as tests/test_protocol.py does;
* trials per candidate: by verdict, from those evaluations and from inert mechanisms (dry run).
Synthetic task, scripted policy. Prints one line per figure.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from recur.evidence.heldout import measure_races
from recur.evidence.mech_eval import evaluate_mechanism
from recur.levels.run import RunOptions

MECHS = Path(__file__).resolve().parent.parent / "tests" / "mechanisms"


def null_rate(n: int, workers: int) -> tuple[float, list[dict]]:
    source = (MECHS / "null" / "random_select.py").read_text()
    parts = [n // workers + (i < n % workers) for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = [r for part in pool.map(measure_races, [source] * workers, parts, range(7, 7 + workers)) for r in part]
    return sum(r["verdict"] == "promoted" for r in results) / n, results


def _evaluate_one(path: Path, seed: int, kw: dict) -> dict:
    with tempfile.TemporaryDirectory() as d:
        return evaluate_mechanism(str(path), 1, RunOptions(task="synthetic", model="scripted", seed=seed, **kw), Path(d))


def evaluations(path: Path, seeds: int, workers: int, **kw) -> list[dict]:
    """One process per evaluation at a time (CPython 3.11's ast.parse is not safe in concurrent threads)."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_evaluate_one, [path] * seeds, range(seeds), [kw] * seeds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--null", type=int, default=100)
    ap.add_argument("--power", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    t = time.monotonic()
    rate, races = null_rate(a.null, a.workers)
    print(f"null promotion rate (random select, {a.null} races, alpha 0.05): {rate:.3f}; "
          f"races that changed decisions {sum(sum(r['hook_effects'].values()) > 0 for r in races)}/{a.null}; "
          f"mean trials per race {statistics.fmean(r['trials'] for r in races):.1f}; {time.monotonic() - t:.0f} s")
    t = time.monotonic()
    from recur.mechanism_store.builtin import render

    with tempfile.TemporaryDirectory() as d:
        tpe = Path(d) / "tpe.py"
        tpe.write_text(render("tpe", {}))
        power = evaluations(tpe, a.power, a.workers, window=8, max_pairs=16, screen_seeds=0)
    print(f"power (tpe promoted, window 8, 16 blocks, no screen): {sum(r['verdict'] == 'promoted' for r in power)}/{a.power}; "
          f"p {[round(r['p'] or 1, 3) for r in power]}; {time.monotonic() - t:.0f} s")
    for name, path, kw in [("tpe", None, None), ("extremes (harmful)", MECHS / "planted" / "extremes.py", {"screen_seeds": 0}),
                           ("identity_filter (inert)", MECHS / "inert" / "identity_filter.py", {})]:
        runs = power if path is None else evaluations(path, a.power, a.workers, **kw)
        verdicts = {v: sum(r["verdict"] == v for r in runs) for v in sorted({r["verdict"] for r in runs})}
        print(f"{name}: verdicts {verdicts}; level-1 trials per candidate mean {statistics.fmean(r['trials'] for r in runs):.1f}"
              f" (min {min(r['trials'] for r in runs)}, max {max(r['trials'] for r in runs)})")


if __name__ == "__main__":
    main()
