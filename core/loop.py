"""The one Loop interface every level implements, and the one driver that runs any of them.

propose -> evaluate -> accept -> record. The driver owns budgets, tracing and resume so no level has its
own copy: before a candidate is evaluated it is written to the trace as ``running``; after, outcome and
decision are written in one transaction and ``record`` applies side effects (git commits, promotions).
``record`` must be idempotent, because on resume the driver *replays* finished trials through it instead of
re-running them, and re-evaluates (never re-proposes) a trial that was ``running`` when the run died.
"""
from __future__ import annotations

import abc
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from recur.core.budget import Budget
from recur.core.records import Candidate, Decision, Outcome, Trial
from recur.core.trace import TraceStore


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (run seed, trial id...): same inputs, same seed, across processes."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class StepContext:
    """What ``propose`` gets: where it is, the trial id and seed to use, and the window's history so far."""

    run_id: str
    scope: str
    step: int
    trial_id: str
    seed: int
    history: list[Trial] = field(default_factory=list)


class Loop(abc.ABC):
    """One level's search. The driver calls these; levels never loop themselves."""

    level: int = 1
    charges_budget: bool = False
    """True for the level whose trials are the real cost unit (level 1). Outer levels' costs are their children's,
    already charged; replayed trials are not charged again (the run's budget is re-read from the trace on resume)."""

    @abc.abstractmethod
    def propose(self, ctx: StepContext) -> Candidate:
        """What to try next (through the level's policy and its mechanisms)."""

    @abc.abstractmethod
    def evaluate(self, candidate: Candidate, budget: Budget) -> Outcome:
        """Run it: one trial at level 1, a child window above. Never raises for a failed trial."""

    @abc.abstractmethod
    def accept(self, candidate: Candidate, outcome: Outcome, history: list[Trial]) -> Decision:
        """Keep or discard (the statistical gate plus any ``accept`` mechanism)."""

    def record(self, trial: Trial) -> str | None:
        """Apply the decision's side effects idempotently; may return a commit sha for the trace."""
        return None

    def hook_delta(self) -> dict:
        """Hook calls made since the last call (the driver stores them with the trial in one transaction)."""
        return {}

    def finish(self, history: list[Trial]) -> None:
        """Called once when the window ends (flush hook counts, close workers)."""


def _relative(scope: str, run_id: str) -> str:
    return scope[len(run_id) + 1:] if scope.startswith(run_id + "/") else scope


def drive(
    loop: Loop,
    trace: TraceStore,
    run_id: str,
    scope: str,
    steps: int,
    budget: Budget,
    parallel: int = 1,
    on_trial: Callable[[Trial, bool], None] | None = None,
    seed_scope: str | None = None,
    run_seed: int = 0,
    seed_of: Callable[[int], int] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Trial]:
    """Run ``loop`` for up to ``steps`` candidates in ``scope`` under ``budget``; resume-safe.

    ``parallel`` > 1 proposes that many candidates from the same history and evaluates them concurrently,
    then accepts and records them in step order. ``on_trial(trial, replayed)`` feeds progress displays.
    Trial seeds derive from ``seed_scope`` (default ``scope``) and the step, so a candidate window and its
    control window given the same ``seed_scope`` run on the same seeds (a paired comparison). Seeds depend on
    ``run_seed`` and the scope *below* the run id, so two runs with the same ``--seed`` draw the same seeds.
    ``seed_of(step)`` overrides that (level 1 derives seeds from the global trial index of its lineage).
    ``stop()`` ends the window early, checked before each step (an outer level's lineage reached its end).
    """
    history: list[Trial] = []
    step = 0
    while step < steps and not budget.exhausted and not (stop and stop()):
        batch: list[tuple[int, Candidate]] = []
        for offset in range(min(parallel, steps - step)):
            i = step + offset
            trial_id = f"{scope}/{i}"
            row = trace.trial_row(trial_id)
            if row is not None and row.finished:
                if batch:
                    break
                trial = row.trial()
                sha = loop.record(trial)
                if sha and sha != row.commit_sha:
                    trace.set_commit(trial_id, sha)
                history.append(trial)
                if on_trial:
                    on_trial(trial, True)
                batch = []
                step = i + 1
                break
            if row is not None:  # died while running: evaluate the same candidate again, never re-propose
                candidate = row.candidate
            else:
                seed = seed_of(i) if seed_of else derive_seed(run_seed, _relative(seed_scope or scope, run_id), i)
                ctx = StepContext(run_id, scope, i, trial_id, seed, list(history))
                candidate = loop.propose(ctx)
            trace.begin_trial(run_id, scope, i, candidate, loop.hook_delta())
            batch.append((i, candidate))
        if not batch:
            continue
        if len(batch) == 1:
            outcomes = [loop.evaluate(batch[0][1], budget)]
        else:
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                outcomes = list(pool.map(lambda item: loop.evaluate(item[1], budget), batch))
        for (i, candidate), outcome in zip(batch, outcomes):
            decision = loop.accept(candidate, outcome, history)
            memo_key = None if outcome.info.get("memo_of") else outcome.info.get("memo_key")
            trace.finish_trial(candidate.id, outcome, decision, loop.hook_delta(), memo_key=memo_key, run_id=run_id)
            trial = Trial(candidate, outcome, decision)
            sha = loop.record(trial)
            if sha:
                trace.set_commit(candidate.id, sha)
            if loop.charges_budget:
                budget.charge(outcome.cost)  # a reused trial costs {"trials": 0}
            history.append(trial)
            if on_trial:
                on_trial(trial, False)
            step = i + 1
    loop.finish(history)
    return history
