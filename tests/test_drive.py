"""The driver keeps K trials in flight (issue 12: asynchronous proposals) while accepting and recording them in
step order, and resumes a window that died with trials in flight. A small Loop whose trials take chosen times,
driven by the production ``drive`` over a real SQLite trace."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from recur.core.budget import Budget
from recur.core.loop import Loop, StepContext, drive
from recur.core.records import OK, Candidate, Decision, Outcome, Trial
from recur.core.trace import TraceStore

DURATIONS = [0.8, 0.1, 0.1, 0.1, 0.1, 0.1]  # step 0 is slow: the others must not wait for it to start


class TimedLoop(Loop):
    level = 1
    charges_budget = True

    def __init__(self, crash_at: int | None = None):
        self.events: list[tuple[str, int, float]] = []
        self.seen: list[list[int]] = []  # the history each accept saw
        self.crash_at = crash_at
        self.lock = threading.Lock()

    def _log(self, what: str, step: int) -> None:
        with self.lock:
            self.events.append((what, step, time.monotonic()))

    def propose(self, ctx: StepContext) -> Candidate:
        self._log("propose", ctx.step)
        return Candidate(ctx.trial_id, 1, "timed", {"step": ctx.step, "saw": len(ctx.history)}, ctx.seed)

    def evaluate(self, candidate: Candidate, budget: Budget) -> Outcome:
        step = candidate.payload["step"]
        self._log("start", step)
        time.sleep(DURATIONS[step])
        self._log("end", step)
        return Outcome(OK, metric=float(step), cost={"trials": 1})

    def accept(self, candidate: Candidate, outcome: Outcome, history: list[Trial]) -> Decision:
        if self.crash_at is not None and candidate.payload["step"] == self.crash_at:
            raise KeyboardInterrupt  # the run dies here, with later trials still in flight
        self.seen.append([t.candidate.payload["step"] for t in history])
        return Decision(keep=False, reason="timed")


def _when(loop: TimedLoop, what: str, step: int) -> float:
    return next(t for w, s, t in loop.events if w == what and s == step)


def _trace(tmp_path: Path) -> TraceStore:
    trace = TraceStore(tmp_path / "trace.db")
    trace.start_run("r", {}, 0)
    return trace


def test_two_workers_keep_two_trials_in_flight_and_record_in_step_order(tmp_path: Path) -> None:
    trace, loop = _trace(tmp_path), TimedLoop()
    history = drive(loop, trace, "r", "r/L1", len(DURATIONS), Budget(trials=100), parallel=2)
    assert [t.candidate.payload["step"] for t in history] == list(range(len(DURATIONS)))
    assert loop.seen == [list(range(i)) for i in range(len(DURATIONS))]  # accept saw the steps before it, in order
    # while slow step 0 ran, step 1 ended and steps 2, 3... were proposed and run in its freed slot
    assert _when(loop, "start", 2) < _when(loop, "end", 0) and _when(loop, "start", 3) < _when(loop, "end", 0)
    running = 0
    for what, _, _ in sorted(loop.events, key=lambda e: e[2]):
        running += {"start": 1, "end": -1}.get(what, 0)
        assert running <= 2  # never more than K at once
    rows = trace.scope_rows("r/L1")
    assert [r.step for r in rows] == list(range(len(DURATIONS))) and all(r.finished for r in rows)


def test_one_worker_records_each_trial_before_proposing_the_next(tmp_path: Path) -> None:
    trace, loop = _trace(tmp_path), TimedLoop()
    drive(loop, trace, "r", "r/L1", 3, Budget(trials=100), parallel=1)
    order = [(w, s) for w, s, _ in sorted(loop.events, key=lambda e: e[2])]
    assert order == [(w, s) for s in range(3) for w in ("propose", "start", "end")]


def test_a_window_that_died_with_trials_in_flight_resumes_without_losing_or_repeating_one(tmp_path: Path) -> None:
    trace = _trace(tmp_path)
    first = TimedLoop(crash_at=1)
    try:
        drive(first, trace, "r", "r/L1", len(DURATIONS), Budget(trials=100), parallel=2)
    except KeyboardInterrupt:
        pass
    rows = {r.step: r for r in trace.scope_rows("r/L1")}
    assert rows[0].finished and not rows[1].finished  # recorded in order: nothing after the crash is finished
    begun = {s for s, r in rows.items() if not r.finished}
    again = TimedLoop()
    history = drive(again, trace, "r", "r/L1", len(DURATIONS), Budget(trials=100), parallel=2)
    assert [t.candidate.payload["step"] for t in history] == list(range(len(DURATIONS)))
    proposed_again = {s for w, s, _ in again.events if w == "propose"}
    assert not proposed_again & begun  # a trial begun before the crash is evaluated again, never re-proposed
    assert 0 not in {s for w, s, _ in again.events if w == "start"}  # a finished one is replayed, not re-run
    assert all(r.finished for r in trace.scope_rows("r/L1")) and len(trace.scope_rows("r/L1")) == len(DURATIONS)


def test_trials_in_flight_never_exceed_the_trial_budget(tmp_path: Path) -> None:
    trace, loop = _trace(tmp_path), TimedLoop()
    history = drive(loop, trace, "r", "r/L1", len(DURATIONS), Budget(trials=3), parallel=2)
    assert len(history) == 3 and len({s for w, s, _ in loop.events if w == "start"}) == 3
