"""Each built-in mechanism family alone against level 1 alone on the synthetic task, many paired seeds.

Usage: python bench/bench_families.py [--seeds 30] [--trials 14,40,100] [--families tpe,trust_region,a+b,...] [--first-seed 0]

Seed s runs surface instance s from the task's default config with the scripted level-1 policy, once with no
mechanism and once with the family (defaults, active from the first trial, run through the sandbox), on the
same trial seeds (levels/simulate.py: level 1's own context, payload and keep rule, the trial evaluated in
process). Printed per family and budget: mean gain over the start (start minus best observed), the paired
difference family - alone with a 95% bootstrap CI and a sign-flip p-value, and the share of the gap between
the start and the surface's optimum that was closed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _optimum(surface, space) -> float:
    """The surface's optimum, searched hard (random restarts + coordinate descent on the clean function)."""
    import random

    from recur.tasks.synthetic.surface import CHOICES, NUMERIC, SPACE

    best = None
    rng = random.Random(0)
    for centre, _depth, _width in surface.basins:
        point = {}
        for i, n in enumerate(NUMERIC):
            s = SPACE[n]
            u = centre[i]
            if s.get("log"):
                import math
                v = math.exp(math.log(s["low"]) + u * (math.log(s["high"]) - math.log(s["low"])))
            else:
                v = s["low"] + u * (s["high"] - s["low"])
            point[n] = v
        for n in CHOICES:
            point[n] = min(SPACE[n]["choices"], key=lambda c: surface.choice_offsets[n][str(c)])
        value = surface.clean(point)
        step = 0.05
        for _ in range(400):
            n = rng.choice(NUMERIC)
            s = SPACE[n]
            trial = dict(point)
            if s.get("log"):
                trial[n] = min(max(point[n] * (1 + rng.gauss(0, step)), s["low"]), s["high"])
            else:
                trial[n] = min(max(point[n] + rng.gauss(0, step) * (s["high"] - s["low"]), s["low"]), s["high"])
            v = surface.clean(trial)
            if v is not None and (value is None or v < value):
                point, value = trial, v
        if value is not None and (best is None or value < best):
            best = value
    return best


def _source(family: str) -> str:
    """``slug`` or ``slug@name=value;name=value`` (a family with some parameters set) -> module source."""
    from recur.mechanism_store.builtin import render

    slug, _, rest = family.partition("@")
    params = {}
    for item in filter(None, rest.split(";")):
        name, _, value = item.partition("=")
        params[name] = float(value)
    return render(slug, params)


def _one(args: tuple[str | None, int, int]) -> tuple[str | None, int, list[float], float, float]:
    family, seed, trials = args
    from recur.core.hooks import ActiveMechanism, HookRunner
    from recur.core.policy import ScriptedBackend, SearchPolicy
    from recur.core.sandbox import Sandbox
    from recur.levels.simulate import run_level1
    from recur.mechanism_store.gate import defined_hooks
    from recur.tasks.synthetic.surface import Surface
    from recur.tasks.synthetic.task import SyntheticTask
    from recur.core.edits import read_constants

    task = SyntheticTask()
    space = task.space()
    start = read_constants(open(os.path.join(ROOT, "tasks", "synthetic", "config.py")).read())
    surface = Surface(seed)
    sandbox = None
    mechanisms = []
    if family:  # "a+b": several mechanisms active together, in that order
        sources = {f"m{i}": _source(part) for i, part in enumerate(family.split("+"))}
        mechanisms = [ActiveMechanism(name, source, defined_hooks(source)) for name, source in sources.items()]
        sandbox = Sandbox(sources)
    try:
        policy = SearchPolicy(ScriptedBackend(3), HookRunner(mechanisms, sandbox), ScriptedBackend(3))
        run = run_level1(lambda p, s: surface(p, s), space, start, policy, trials, seed)
    finally:
        if sandbox is not None:
            sandbox.close()
    best = []
    lowest = run.start
    for m in run.metrics:
        if m is not None:
            lowest = min(lowest, m)
        best.append(lowest)
    return family, seed, best, run.start, _optimum(surface, space)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--trials", default="14,40,100")
    ap.add_argument("--families", default="tpe,trust_region,line_search,categorical_sweep,latin_hypercube,elite_crossover,ucb_bandit,tabu,annealing,restart,freeze_guidance")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="first surface instance; tune on instances no ablation uses (e.g. 1000) and compare there")
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    budgets = [int(x) for x in args.trials.split(",")]
    families = [f for f in args.families.split(",") if f]
    from recur.core.stats import bootstrap_ci, sign_flip_pvalue

    t0 = time.time()
    jobs = [(f, s, max(budgets)) for f in [None, *families] for s in seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_one, jobs, chunksize=4))
    by = {(f, s): (best, start, opt) for f, s, best, start, opt in results}
    print(f"# {args.seeds} seeds (surface instances {seeds.start}-{seeds.stop - 1}), scripted level 1, default config start; {time.time() - t0:.0f} s")
    print("| family | trials | mean gain | diff vs alone | 95% CI | p | gap closed |")
    print("|---|---|---|---|---|---|---|")
    for f in [None, *families]:
        for b in budgets:
            gains = [by[(f, s)][1] - by[(f, s)][0][b - 1] for s in seeds]
            closed = statistics.fmean((by[(f, s)][1] - by[(f, s)][0][b - 1]) / (by[(f, s)][1] - by[(f, s)][2])
                                      for s in seeds)
            if f is None:
                print(f"| level 1 alone | {b} | {statistics.fmean(gains):+.3f} | | | | {closed:.0%} |")
                continue
            alone = [by[(None, s)][1] - by[(None, s)][0][b - 1] for s in seeds]
            diff = [g - a for g, a in zip(gains, alone)]
            lo, hi = bootstrap_ci(diff, 0)
            p = sign_flip_pvalue(diff)
            print(f"| {f} | {b} | {statistics.fmean(gains):+.3f} | {statistics.fmean(diff):+.3f} | "
                  f"[{lo:+.3f}, {hi:+.3f}] | {p:.3g} | {closed:.0%} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
