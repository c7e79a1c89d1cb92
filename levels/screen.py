"""Screening: cheap evidence on a candidate mechanism before it spends a single real level-1 trial.

A candidate that passes the gate and the dry run is raced on real trials, which is where the budget goes. The
screen runs it first on simulated level 1 (levels/simulate.py), paired against the incumbent mechanisms on the
same seeds, over two kinds of cheap objective:

* a **surrogate of this run's task**: a random forest (scikit-learn) fitted to the lineage's level-1 trials
  (full parameter point -> metric, failures scored as the worst metric seen), plus half the run's keep
  threshold as trial noise, started from the lineage's current incumbent;
* **fresh instances of the task** where the task offers them (``Task.screen_instances``: the synthetic task
  draws surfaces the run never sees), started from the task's default point.

The candidate passes when its mean paired gain over the incumbent arm is positive with a one-sided sign-flip
p-value at most ``alpha`` (0.25 by default). The screen filters out harm: a race runs on the run's own line
of search and repeats no trial, so racing a candidate that is merely no better costs nothing on average,
while one the screen finds worse would spend real trials making the search worse. It is a filter, not
evidence of a gain: only the race on real trials and its held-out blocks can promote. How well the screen predicts the race is reported (``recur report``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recur.core.hooks import ActiveMechanism, HookRunner
from recur.core.loop import derive_seed
from recur.core.policy import SearchPolicy
from recur.core.stats import sign_flip_pvalue
from recur.levels.simulate import Objective, simulated_gain

MIN_SURROGATE_POINTS = 8
INSTANCE_SEED = 0  # fresh instances and their simulated runs are drawn from this seed, not the run's


@dataclass
class ScreenSettings:
    seeds: int = 8  # paired simulated runs per kind of objective
    horizon: int = 30  # simulated level-1 trials per run
    alpha: float = 0.25  # one-sided p the candidate must reach (0 < alpha; 1 passes any positive mean)
    shortlist: int = 4  # candidates that passed, held before the best-screened one races (1: race each at once)


def unit_row(point: dict[str, Any], space: dict[str, dict[str, Any]]) -> list[float]:
    """A parameter point as numbers for the surrogate: numbers in [0, 1] (log where the space says so), one
    column per choice value (one-hot)."""
    from recur.core.mechanism_api import axis, to_unit

    row: list[float] = []
    for name in sorted(space):
        ax = axis(space[name])
        if ax is None:
            continue
        if ax[0] == "choice":
            row.extend(1.0 if point.get(name) == c else 0.0 for c in ax[4])
        else:
            row.append(to_unit(point.get(name), ax))
    return row


def fit_surrogate(points: list[tuple[dict[str, Any], float | None]], space: dict[str, dict[str, Any]], sigma: float,
                  seed: int) -> Objective | None:
    """A random-forest model of the task from (point, metric or None) pairs, with seeded Gaussian trial noise
    of ``sigma``; None when there are too few successful points to fit."""
    ok = [m for _, m in points if m is not None and math.isfinite(m)]
    if len(ok) < MIN_SURROGATE_POINTS:
        return None
    from sklearn.ensemble import RandomForestRegressor

    worst = max(ok)
    X = [unit_row(p, space) for p, _ in points]
    y = [m if m is not None and math.isfinite(m) else worst for _, m in points]
    forest = RandomForestRegressor(n_estimators=30, min_samples_leaf=2, random_state=seed % (2 ** 31), n_jobs=1)
    forest.fit(X, y)
    trees = [est.tree_ for est in forest.estimators_]
    cache: dict[str, float] = {}

    def objective(point: dict[str, Any], trial_seed: int) -> float:
        row = unit_row(point, space)
        key = repr(row)
        if key not in cache:  # the trees directly: forest.predict validates and dispatches, 50x slower per row
            x = np.asarray([row], dtype=np.float32)
            cache[key] = float(sum(t.predict(x)[0, 0] for t in trees) / len(trees))
        return cache[key] + random.Random(f"surrogate-noise-{trial_seed}").gauss(0.0, sigma)

    return objective


class SharedScreens:
    """Simulated gains on the task's fresh instances, kept on disk for every run on the machine.

    A fresh-instance run is a function of the arm's mechanisms (their names are content hashes), the instance,
    the horizon, the number of proposals and the code that simulates it, not of the run that asks: every
    level-2 run of an ablation screens the same families against the same incumbents, and recomputing those
    runs bought nothing but time. Keyed like the gate's cache (``mechanism_store/gate.py``): the code's
    fingerprint is part of the key, so an edited simulator or task never reads an old entry."""

    def __init__(self, cache_dir: Path | None, task: Any, proposals: int):
        self.root = cache_dir / "screen" if cache_dir is not None else None
        self.prefix = f"{screen_fingerprint(task)}\0{type(task).__name__}\0{proposals}\0"

    def _path(self, slot: tuple) -> Path | None:
        if self.root is None:
            return None
        return self.root / (hashlib.sha256((self.prefix + json.dumps(slot)).encode()).hexdigest() + ".json")

    def get(self, slot: tuple) -> float | None:
        path = self._path(slot)
        try:
            value = json.loads(path.read_text()) if path is not None and path.exists() else None
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and rewritten
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def put(self, slot: tuple, value: float) -> None:
        path = self._path(slot)
        if path is None or not math.isfinite(value):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(value))
            os.replace(tmp, path)  # atomic: a concurrent job reads no entry or the whole one
        except OSError:
            pass  # an unwritable cache only costs time


def screen_fingerprint(task: Any) -> str:
    """Hash of the code a simulated run depends on: the simulator, the policy and hook pipeline, the sandbox,
    the mechanism API, and every module of the task's package."""
    from recur.core import hooks, mechanism_api, policy, sandbox, sandbox_worker
    from recur.levels import simulate

    digest = hashlib.sha256()
    files = [Path(m.__file__) for m in (hooks, mechanism_api, policy, sandbox, sandbox_worker, simulate, sys.modules[__name__])]
    task_file = getattr(sys.modules.get(type(task).__module__), "__file__", None)
    if task_file:
        files += sorted(Path(task_file).parent.glob("*.py"))
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def screen(space: dict[str, dict[str, Any]], objectives: list[tuple[str, str, Objective, dict[str, Any]]],
           make_policy: Callable[[list[ActiveMechanism]], SearchPolicy], candidate: list[ActiveMechanism],
           incumbent: list[ActiveMechanism], settings: ScreenSettings, seed: int, maximize: bool = False,
           cache: dict[tuple, float] | None = None, shared: SharedScreens | None = None) -> dict[str, Any]:
    """Paired simulated runs of level 1 with the candidate's active set against the incumbent's, one per entry of
    ``objectives`` (key, kind, objective, start; an objective listed n times under n keys runs on n seeds). Each
    arm's gains are kept in ``cache`` by (key, active set, horizon, seed): every candidate is compared with the
    same incumbent runs, and a mechanism proposed again (in another window or arm) is not simulated again on
    the same objective. A key must therefore name its objective and start exactly; keys of kind ``instance``
    name a fresh instance that is the same for every run, and their gains are also kept in ``shared``. Returns the verdict (``passed``), the mean paired gain difference per trial, its p-value,
    and per-objective means."""
    t0 = time.monotonic()
    diffs: list[float] = []
    by_kind: dict[str, list[float]] = {}
    cache = {} if cache is None else cache

    def gain(key: str, kind: str, objective: Objective, start: dict[str, Any], arm: list[ActiveMechanism]) -> float:
        run_seed = INSTANCE_SEED if kind == "instance" else seed  # a fresh instance is screened alike in every run
        slot = (key, tuple(m.name for m in arm), settings.horizon, run_seed)  # names are content hashes in the store
        if slot not in cache:
            found = shared.get(slot) if shared is not None and kind == "instance" else None
            if found is None:
                found = simulated_gain(objective, space, start, lambda: make_policy(arm), settings.horizon,
                                       derive_seed(run_seed, "screen", key), maximize=maximize)
                if shared is not None and kind == "instance":
                    shared.put(slot, found)
            cache[slot] = found
        return cache[slot]

    for key, kind, objective, start in objectives:
        d = (gain(key, kind, objective, start, candidate) - gain(key, kind, objective, start, incumbent)) / settings.horizon
        diffs.append(d)
        by_kind.setdefault(kind, []).append(d)
    mean = statistics.fmean(diffs) if diffs else 0.0
    p = sign_flip_pvalue(diffs, seed=seed % 1000) if diffs else 1.0
    # No objective (too few trials to fit a surrogate, no cheap instances), or simulated runs that all tie (a
    # surrogate that predicts nothing better than the incumbent's own point), is no evidence either way: the
    # screen filters harm, so such a candidate goes on unscreened rather than being thrown away unseen.
    informative = any(d != 0.0 for d in diffs)
    return {"passed": not informative or (mean > 0 and p <= settings.alpha), "informative": informative,
            "diff": mean, "p": p, "runs": len(diffs),
            "kinds": {k: statistics.fmean(v) for k, v in by_kind.items()}, "seconds": round(time.monotonic() - t0, 3),
            "settings": asdict(settings)}


def screen_reason(screened: dict[str, Any]) -> str:
    """The screen's verdict in words, for the trace and the console."""
    if screened.get("informative", True):
        return f"screen: mean {screened['diff']:+.4g} per trial over {screened['runs']} simulated runs, p = {screened['p']:.3g}"
    why = (f"{screened['runs']} simulated runs, every one a tie with the incumbent" if screened["runs"]
           else "too few level-1 trials to simulate yet")
    return f"screen: uninformative ({why}), so not screened"


def policy_maker(backend_of: Callable[[], Any], invoker: Any, fallback: Any) -> Callable[[list[ActiveMechanism]], SearchPolicy]:
    """Build a fresh SearchPolicy per simulated run (fresh hook counts), sharing one sandbox invoker."""

    def make(mechanisms: list[ActiveMechanism]) -> SearchPolicy:
        return SearchPolicy(backend_of(), HookRunner(list(mechanisms), invoker if mechanisms else None), fallback)

    return make


__all__ = ["ScreenSettings", "SharedScreens", "fit_surrogate", "policy_maker", "screen", "screen_fingerprint", "screen_reason",
           "unit_row"]
