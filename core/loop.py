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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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


def run_relative(scope: str, run_id: str) -> str:
    """``scope`` without its run id: seeds derive from this, so the same ``--seed`` replays the same trials
    in any workspace (a run id is a timestamp)."""
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

    ``parallel`` > 1 keeps that many trials in flight: whenever one ends, the next is proposed (from the trials
    recorded so far) and started while the others run; outcomes are accepted and recorded in step order, so the
    keep rule, the trace and resume see the same sequence as a serial run (a trial that ended before an earlier
    one waits for it to be recorded; one running when the run died is evaluated again, never re-proposed). ``on_trial(trial, replayed)`` feeds progress displays.
    Trial seeds derive from ``seed_scope`` (default ``scope``) and the step, so a candidate window and its
    control window given the same ``seed_scope`` run on the same seeds (a paired comparison). Seeds depend on
    ``run_seed`` and the scope *below* the run id, so two runs with the same ``--seed`` draw the same seeds.
    ``seed_of(step)`` overrides that (level 1 derives seeds from the global trial index of its lineage).
    ``stop()`` ends the window early, checked before each step (an outer level's lineage reached its end).
    """
    history: list[Trial] = []
    step = 0  # the next step to accept and record: always in step order, so the keep rule sees a fixed order
    started = 0  # the next step to start
    running: dict[int, tuple[Candidate, Future]] = {}  # started, still evaluating
    done: dict[int, tuple[Candidate, Outcome]] = {}  # evaluated, waiting for an earlier step to be recorded
    pool = ThreadPoolExecutor(max_workers=parallel) if parallel > 1 else None

    def room() -> bool:
        """A new trial may start: a free slot, steps and budget left (counting trials already in flight)."""
        busy = len(running) if pool is not None else len(done)  # serially, a trial is recorded before the next
        if started >= steps or busy >= max(1, parallel) or budget.exhausted or (stop and stop()):
            return False
        return not loop.charges_budget or len(running) + len(done) < budget.remaining("trials")

    def finish(i: int, candidate: Candidate, outcome: Outcome) -> None:
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

    try:
        while True:
            while room():
                i = started
                trial_id = f"{scope}/{i}"
                row = trace.trial_row(trial_id)
                if row is not None and row.finished:
                    if running or done:
                        break  # finished rows are replayed in order, once everything before them is recorded
                    trial = row.trial()
                    sha = loop.record(trial)
                    if sha and sha != row.commit_sha:
                        trace.set_commit(trial_id, sha)
                    history.append(trial)
                    if on_trial:
                        on_trial(trial, True)
                    step = started = i + 1
                    continue
                if row is not None:  # died while running: evaluate the same candidate again, never re-propose
                    candidate = row.candidate
                else:  # proposed from what is recorded so far, while earlier trials may still be running
                    seed = seed_of(i) if seed_of else derive_seed(run_seed, run_relative(seed_scope or scope, run_id), i)
                    candidate = loop.propose(StepContext(run_id, scope, i, trial_id, seed, list(history)))
                trace.begin_trial(run_id, scope, i, candidate, loop.hook_delta())
                started = i + 1
                if pool is None:
                    done[i] = (candidate, loop.evaluate(candidate, budget))
                else:
                    running[i] = (candidate, pool.submit(loop.evaluate, candidate, budget))
            if running and step not in done:  # wait for any trial; a freed slot is filled before recording
                wait([f for _, f in running.values()], return_when=FIRST_COMPLETED)
                for i in [i for i, (_, f) in running.items() if f.done()]:
                    candidate, future = running.pop(i)
                    done[i] = (candidate, future.result())
            if step not in done:
                if running:
                    continue
                break
            while step in done:
                finish(step, *done.pop(step))
                step += 1
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    loop.finish(history)
    return history
