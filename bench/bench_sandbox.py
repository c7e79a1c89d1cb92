"""Sandbox start-up time and per-call overhead.

    python bench/bench_sandbox.py [--calls 2000] [--starts 5]

Prints the worker start-up time (spawn -> ready, mean/min over ``--starts`` workers), then the median and p95
wall-clock time per call of a trivial ``select`` hook (``return proposals[0]``) over ``--calls`` calls, both
as seen by the caller and minus the same hook called directly in this process (the sandbox's overhead), and
the same for a realistic call (a UCB selector over 20 proposals and a 300-record history).
"""
from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from pathlib import Path

from recur.core.sandbox import Sandbox

TRIVIAL = '''from recur.core.mechanism_api import Mechanism


class First(Mechanism):
    """Pick the first proposal."""

    def select(self, proposals, history, rng):
        return proposals[0]
'''

# the realistic hook is the UCB1 selector the tests use as a benign mechanism (one copy of it)
UCB = (Path(__file__).resolve().parent.parent / "tests" / "mechanisms" / "benign" / "ucb_kinds.py").read_text()


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def in_process(source: str) -> object:
    ns: dict = {}
    exec(compile(source, "<bench>", "exec"), ns)  # trusted bench source
    from recur.core.mechanism_api import Mechanism

    cls = next(v for v in ns.values() if isinstance(v, type) and issubclass(v, Mechanism) and v is not Mechanism)
    return cls()


def json_floor(args: list, calls: int) -> float:
    """Median in-process cost of what the protocol cannot avoid: encode the args once, decode them once."""
    import json

    times = []
    for _ in range(min(calls, 500)):
        t0 = time.perf_counter()
        json.loads(json.dumps(args, allow_nan=False))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(sb: Sandbox, slug: str, source: str, args: list, calls: int) -> tuple[list[float], float]:
    for i in range(50):  # warm-up
        sb.call(slug, "select", args, i)
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        r = sb.call(slug, "select", args, i)
        times.append(time.perf_counter() - t0)
        assert r.ok, r.error
    mech = in_process(source)
    direct = []
    for i in range(calls):
        a = copy.deepcopy(args)
        t0 = time.perf_counter()
        mech.select(*a, random.Random(i))
        direct.append(time.perf_counter() - t0)
    return times, statistics.median(direct)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=5)
    args = ap.parse_args()

    starts = []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        sb = Sandbox({"first": TRIVIAL})
        starts.append(time.perf_counter() - t0)
        sb.close()
    import os

    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"worker start-up: mean {statistics.mean(starts) * 1e3:.1f} ms, min {min(starts) * 1e3:.1f} ms "
          f"over {args.starts} starts")

    kinds = ["lr", "depth", "width", "warmup", "act"]
    rng = random.Random(0)
    proposals = [{"kind": rng.choice(kinds), "payload": {"params": {"lr": rng.random()}}, "rationale": "r"}
                 for _ in range(20)]
    history = [{"id": f"t{i}", "level": 1, "parent": None, "kind": rng.choice(kinds),
                "payload": {"params": {"lr": rng.random()}}, "metric": 1.5 + rng.random(), "cost": 1.0,
                "status": "ok", "seed": i, "kept": rng.random() < 0.2} for i in range(300)]

    with Sandbox({"first": TRIVIAL, "ucb": UCB}) as sb:
        for label, slug, source, call_args in (
            ("trivial select (1 proposal, empty history)", "first", TRIVIAL, [[{"kind": "a", "payload": {}}], []]),
            ("UCB select (20 proposals, 300 records)", "ucb", UCB, [proposals, history]),
        ):
            times, direct = measure(sb, slug, source, call_args, args.calls)
            med, p95 = statistics.median(times), percentile(times, 0.95)
            print(f"{label}: {args.calls} calls")
            print(f"    per call  median {med * 1e3:.3f} ms   p95 {p95 * 1e3:.3f} ms   max {max(times) * 1e3:.3f} ms")
            print(f"    in-process hook median {direct * 1e3:.4f} ms -> sandbox overhead median "
                  f"{(med - direct) * 1e3:.3f} ms, p95 {(p95 - direct) * 1e3:.3f} ms")
            print(f"    (of which JSON encode+decode of the arguments, measured in-process: "
                  f"{json_floor(call_args, args.calls) * 1e3:.3f} ms)")
        print(f"workers started: {sb.starts}")


if __name__ == "__main__":
    main()
