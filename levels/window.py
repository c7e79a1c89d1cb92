"""Windows: running a level for a bounded number of steps from a given start, the unit outer levels evaluate.

Every level exposes ``run_window(...) -> WindowResult``; level k>1 evaluates a candidate by running level
k-1's window with it active and again without (the control). The result is measured in the one currency
that matters at every level: how much the task metric improved, per level-1 trial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recur.core.hooks import ActiveMechanism, HookRunner
from recur.core.loop import drive
from recur.core.policy import SearchPolicy
from recur.levels.inner import InnerLoop, WindowState
from recur.levels.runtime import Runtime


@dataclass
class WindowStart:
    """Where a window begins (and, returned in its result, where it ended): the task commit and its metric,
    and the mechanisms active at each level below the window's own. Windows never share mutable state, so a
    candidate window and its control start from exactly the same place."""

    sha: str
    metric: float | None
    active: dict[int, list[ActiveMechanism]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "metric": self.metric,
                "active": {str(k): [[m.name, m.hooks] for m in v] for k, v in self.active.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], source_of) -> "WindowStart":
        return cls(data["sha"], data["metric"],
                   {int(k): [ActiveMechanism(name, source_of(name), hooks) for name, hooks in v]
                    for k, v in data.get("active", {}).items()})


@dataclass
class WindowResult:
    scope: str
    start_metric: float | None
    best_metric: float | None
    best_sha: str
    trials: int  # level-1 trials spent inside the window (nested windows included)
    seconds: float
    hook_counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # "mech\thook" -> counts, this level only
    final: WindowStart | None = None

    def gain(self, maximize: bool) -> float:
        """Improvement of the task metric over the window's start (never negative: the start is kept)."""
        if self.start_metric is None or self.best_metric is None:
            return 0.0
        diff = self.best_metric - self.start_metric
        return max(0.0, diff if maximize else -diff)

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "start_metric": self.start_metric, "best_metric": self.best_metric,
                "best_sha": self.best_sha, "trials": self.trials, "seconds": self.seconds,
                "hook_counts": self.hook_counts, "final": self.final.to_json() if self.final else None}


def make_policy(rt: Runtime, level: int, mechanisms: list[ActiveMechanism]) -> SearchPolicy:
    invoker = rt.invoker_factory(mechanisms) if mechanisms and rt.invoker_factory else None
    assert rt.backend_factory is not None
    from recur.levels.backends import fallback_backend

    def on_fallback(trial_id: str, error: str) -> None:
        rt.trace.event(rt.run_id, "model-fallback", f"{trial_id}: {error[:300]}", level=level)

    return SearchPolicy(rt.backend_factory(level), HookRunner(mechanisms, invoker), fallback_backend(level), on_fallback)


def close_policy(policy: SearchPolicy | None) -> None:
    invoker = policy.hooks.invoker if policy else None
    if invoker is not None and hasattr(invoker, "close"):
        invoker.close()


def hook_counts_json(counts: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m}\t{h}": v for (m, h), v in counts.items()}


class Level1:
    """Level 1 as a window runner (the inner loop over the task)."""

    level = 1

    def __init__(self, rt: Runtime):
        self.rt = rt

    def run_window(self, scope: str, start: WindowStart, steps: int, branch: str | None = None,
                   baseline_steps: int = 0, seed_scope: str | None = None) -> WindowResult:
        rt = self.rt
        start_sha, start_metric = start.sha, start.metric
        mechanisms = start.active.get(1, [])
        branch = branch or rt.window_branch(scope)
        if not rt.repo.has_branch(branch):
            rt.repo.set_branch(branch, start_sha)
        # on resume, replaying finished trials re-finds their commits (Recur-Trial trailer) and moves ``head``
        state = WindowState(branch=branch, head=start_sha, best=start_metric)
        policy = make_policy(rt, 1, mechanisms) if steps > baseline_steps else None
        loop = InnerLoop(rt, state, policy, baseline_steps)
        try:
            history = drive(loop, rt.trace, rt.run_id, scope, steps, rt.budget, parallel=rt.settings.get("workers", 1),
                            on_trial=rt.on_trial, seed_scope=seed_scope, run_seed=rt.seed)
        finally:
            close_policy(policy)
        if branch == rt.main_branch:
            rt.repo.sync_worktree(branch)
        counts = rt.trace.scope_hook_calls(scope)
        for mech in mechanisms:
            for hook in mech.hooks:
                counts.setdefault((mech.name, hook), {"calls": 0, "errors": 0, "seconds": 0.0, "last_error": None})
        rt.trace.add_hook_calls(rt.run_id, scope, 1, counts)
        return WindowResult(scope, start_metric, state.best, state.best_sha, trials=len(history),
                            seconds=sum(float(t.outcome.cost.get("seconds", 0.0)) for t in history),
                            hook_counts=hook_counts_json(counts),
                            final=WindowStart(state.best_sha, state.best, dict(start.active)))
