"""Level 1 on a cheap objective, in process: what screens a candidate mechanism before it spends real trials.

The real level 1 edits a file in a git repo and runs a trial as a subprocess. Here the trial is a function of
the full parameter point and the trial seed (a synthetic surface instance, or a surrogate fitted to the run's
own trace), everything else is level 1's own code: the same context (``level1_context``), the same policy
pipeline with the mechanisms run through the sandbox, the same payload and the same keep rule
(``keep_rule``), and trial seeds derived like level 1's. So a simulated run differs from a real one only in
what the trial costs, which is the point: hundreds of simulated runs take seconds.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

from recur.core.edits import EditError, coerce
from recur.core.loop import derive_seed
from recur.core.policy import SearchPolicy
from recur.core.stats import keep_threshold, noise_sigma
from recur.core.records import CRASH, INVALID, OK, Candidate, Outcome, Trial
from recur.levels.inner import HISTORY_LIMIT, keep_rule, level1_context, level1_payload

Objective = Callable[[dict[str, Any], int], "float | None"]
"""A trial: full parameter point and seed -> metric, or None when the trial fails."""


@dataclass
class SimulatedRun:
    """One simulated level-1 run: the metric of every trial in order (None for failures), the best kept
    metric after each trial, and the start."""

    start: float
    metrics: list[float | None]
    best_after: list[float]

    def best_observed(self, maximize: bool = False) -> float:
        ok = [m for m in self.metrics if m is not None] + [self.start]
        return max(ok) if maximize else min(ok)


def run_level1(objective: Objective, space: dict, start: dict[str, Any], policy: SearchPolicy, trials: int,
               seed: int, threshold: float | None = None, maximize: bool = False, baseline: int = 3) -> SimulatedRun:
    """Level 1 for ``trials`` trials from ``start`` on ``objective``: ``baseline`` runs of the start set the
    start metric (their mean) and, unless ``threshold`` is given, the keep threshold, as a real run's baseline
    window does."""
    base = [objective(start, derive_seed(seed, "baseline", i)) for i in range(max(1, baseline))]
    base = [m for m in base if m is not None]
    if not base:
        raise ValueError("the start point fails on this objective")
    best = statistics.fmean(base)
    if threshold is None:
        threshold = keep_threshold(noise_sigma(base), 0.0)
    incumbent = dict(start)
    records_all: list[dict[str, Any]] = []  # each trial's record, built once (rebuilding the window each step dominated)
    metrics: list[float | None] = []
    best_after: list[float] = []
    for i in range(trials):
        trial_seed = derive_seed(seed, "L1", i)
        records = records_all[-HISTORY_LIMIT:]
        context = level1_context(space, dict(incumbent), best, maximize, i, records)
        proposal, guided, decision = policy.choose(context, trial_seed, f"sim/{i}")
        payload = level1_payload(proposal, guided, decision, context, policy)
        candidate = Candidate(f"sim/{i}", 1, proposal["kind"], payload, trial_seed)
        try:
            point = {**incumbent, **{n: coerce(n, v, space[n]) for n, v in (payload.get("params") or {}).items()}}
        except (EditError, KeyError) as exc:
            outcome = Outcome(INVALID, info={"error": str(exc)})
            point = None
        else:
            metric = objective(point, trial_seed)
            outcome = Outcome(OK, metric) if metric is not None else Outcome(CRASH)
        verdict = keep_rule(outcome, best, threshold, maximize, policy, records, trial_seed, i)
        if verdict.keep and point is not None:
            incumbent = point
            if verdict.info.get("improved"):
                best = outcome.metric
        records_all.append(Trial(candidate, outcome, verdict).as_record())
        metrics.append(outcome.metric if outcome.ok else None)
        best_after.append(best)
    return SimulatedRun(statistics.fmean(base), metrics, best_after)


def simulated_gain(objective: Objective, space: dict, start: dict[str, Any], make_policy: Callable[[], SearchPolicy],
                   trials: int, seed: int, threshold: float | None = None, maximize: bool = False) -> float:
    """Start metric minus the best metric observed in a simulated run (sign flipped when maximising): the same
    gain a real window reports."""
    run = run_level1(objective, space, start, make_policy(), trials, seed, threshold, maximize)
    best = run.best_observed(maximize)
    return best - run.start if maximize else run.start - best


__all__ = ["Objective", "SimulatedRun", "run_level1", "simulated_gain"]
