"""Windows and the lineage they continue: the unit an outer level evaluates, on one line of search.

A *lineage* is one line of level-1 search: the task commit the next trial edits, the best metric and commit
so far, the global level-1 trial index (trial seeds derive from it, so two arms that start at the same index
see the same noise), and the ids of every trial each level made on this line (what mechanisms see as
``history``: the whole run's, not just a window's). A window continues a lineage for a number of level-1
trials and returns the lineage it ended on. A level that runs windows with no candidate under test simply
chains them, so level 1 run in windows is level 1 run in one piece, trial for trial.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from recur.core.hooks import ActiveMechanism, HookRunner
from recur.core.loop import derive_seed, drive
from recur.core.policy import SearchPolicy
from recur.core.trace import add_counts, empty_counts
from recur.levels.inner import InnerLoop, WindowState
from recur.levels.runtime import Runtime


@dataclass(frozen=True)
class Lineage:
    """Where one line of search stands (immutable: arms fork it, the kept arm's end becomes the main line)."""

    head: str
    best: float | None
    best_sha: str
    index: int = 0
    trail: dict[int, tuple[str, ...]] = field(default_factory=dict)  # level -> trial ids on this line, in order

    def extend(self, level: int, ids: list[str], **changes: Any) -> "Lineage":
        trail = {**self.trail, level: tuple(self.trail.get(level, ())) + tuple(ids)}
        return replace(self, trail=trail, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head, "best": self.best, "best_sha": self.best_sha, "index": self.index,
                "trail": {str(k): list(v) for k, v in self.trail.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Lineage":
        return cls(data["head"], data["best"], data["best_sha"], int(data["index"]),
                   {int(k): tuple(v) for k, v in data.get("trail", {}).items()})


@dataclass
class WindowStart:
    """Where a window begins (and, in its result, where it ended): the lineage, and the mechanisms active at
    each level below the window's own. Windows never share mutable state, so two arms start from exactly
    the same place."""

    lineage: Lineage
    active: dict[int, list[ActiveMechanism]] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return self.lineage.best_sha

    @property
    def metric(self) -> float | None:
        return self.lineage.best

    def to_json(self) -> dict[str, Any]:
        return {"lineage": self.lineage.to_json(),
                "active": {str(k): [[m.name, m.hooks] for m in v] for k, v in self.active.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], source_of) -> "WindowStart":
        return cls(Lineage.from_json(data["lineage"]),
                   {int(k): [ActiveMechanism(name, source_of(name), hooks) for name, hooks in v]
                    for k, v in data.get("active", {}).items()})


@dataclass
class WindowResult:
    scope: str
    start_metric: float | None
    best_metric: float | None
    best_sha: str
    trials: int  # level-1 trials charged inside the window (nested windows included; reused trials are free)
    seconds: float
    hook_counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # "mech\thook" -> counts, summed below
    final: WindowStart | None = None
    steps: int = 0  # level-1 trials on the window's line (charged or reused): how far the lineage moved
    observed: float | None = None  # best metric of any level-1 trial the window ran on its line

    def gain(self, maximize: bool) -> float:
        """How far the window's best trial got beyond its start: start metric minus the best metric observed
        in the window (sign flipped when maximizing). Negative when every trial was worse than the start.

        The best *observed* rather than the best *kept* metric: keeping applies a 2-sigma threshold, so most
        short windows keep nothing and two arms would tie at 0, and ties carry no evidence for the race."""
        if self.start_metric is None or self.observed is None:
            return 0.0
        diff = self.observed - self.start_metric
        return diff if maximize else -diff


def observed_best(rt: Runtime, start: Lineage, end: Lineage, maximize: bool) -> float | None:
    """Best metric among the level-1 trials ``end`` added to ``start``'s line (None if none succeeded)."""
    new = rt.trials_of(end.trail.get(1, ())[len(start.trail.get(1, ())):])
    metrics = [t.outcome.metric for t in new if t.outcome.ok and not t.candidate.payload.get("baseline")]
    if not metrics:
        return None
    return max(metrics) if maximize else min(metrics)


def make_policy(rt: Runtime, level: int, mechanisms: list[ActiveMechanism]) -> SearchPolicy:
    invoker = rt.invoker_factory(mechanisms) if mechanisms and rt.invoker_factory else None
    assert rt.backend_factory is not None
    from recur.levels.backends import fallback_backend

    def on_fallback(trial_id: str, error: str) -> None:
        rt.trace.event(rt.run_id, "model-fallback", f"{trial_id}: {error[:300]}", level=level)

    return SearchPolicy(rt.backend_factory(level), HookRunner(mechanisms, invoker),
                        fallback_backend(level, rt.settings.get("proposals", 3)), on_fallback)


def close_policy(policy: SearchPolicy | None) -> None:
    invoker = policy.hooks.invoker if policy else None
    if invoker is not None and hasattr(invoker, "close"):
        invoker.close()


def sum_hook_counts(rows: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum ``"mech\\thook" -> counts`` dicts (every window of a run, not just the last)."""
    total: dict[str, dict[str, Any]] = {}
    for row in rows:
        for key, v in row.items():
            add_counts(total.setdefault(key, empty_counts()), v)
    return total


def window_hook_counts(rt: Runtime, scope: str, level: int, mechanisms: list[ActiveMechanism]) -> dict[str, dict[str, Any]]:
    """Calls and changed decisions of ``scope``'s own trials, a zero row for every hook defined but unused;
    written to the trace's hook_calls table (replacing, so a replayed window is counted once)."""
    counts = rt.trace.scope_hook_calls(scope)
    for mech in mechanisms:
        for hook in mech.hooks:
            counts.setdefault((mech.name, hook), empty_counts())
    rt.trace.add_hook_calls(rt.run_id, scope, level, counts)
    return {f"{m}\t{h}": v for (m, h), v in counts.items()}


def level1_seed(rt: Runtime, index: int) -> int:
    """The seed of the level-1 trial at global index ``index``: the same in every arm and every group."""
    return derive_seed(rt.seed, "L1", index)


class Level1:
    """Level 1 as a window runner (the inner loop over the task)."""

    level = 1

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.screen_cache: dict[tuple, float] = {}  # simulated gain per (objective key, active set, ...)
        self.surrogates: dict[str, Any] = {}  # fitted surrogate (or None: too few points) per content key
        self.shared_screens: Any = None  # fresh-instance screens kept on disk for every run (levels/screen.py)

    def run_window(self, scope: str, start: WindowStart, steps: int, branch: str | None = None,
                   baseline_steps: int = 0) -> WindowResult:
        rt = self.rt
        lin = start.lineage
        mechanisms = start.active.get(1, [])
        branch = branch or rt.window_branch(scope)
        if not rt.repo.has_branch(branch):
            rt.repo.set_branch(branch, lin.head)
        # on resume, replaying finished trials re-finds their commits (Recur-Trial trailer) and moves ``head``
        state = WindowState(branch=branch, head=lin.head, best=lin.best, best_sha=lin.best_sha)
        policy = make_policy(rt, 1, mechanisms) if steps > baseline_steps else None
        prior = rt.trials_of(lin.trail.get(1, ()))
        loop = InnerLoop(rt, state, policy, baseline_steps, prior=prior, index=lin.index)
        seed_of = None if baseline_steps else (lambda i: level1_seed(rt, lin.index + i))
        try:
            history = drive(loop, rt.trace, rt.run_id, scope, steps, rt.budget, parallel=rt.settings.get("workers", 1),
                            on_trial=rt.on_trial, run_seed=rt.seed, seed_of=seed_of)
        finally:
            close_policy(policy)
        if branch == rt.main_branch:
            rt.repo.sync_worktree(branch)
        rt.remember(history)
        moved = len(history) - min(len(history), baseline_steps)
        final = lin.extend(1, [t.candidate.id for t in history], head=state.head, best=state.best,
                           best_sha=state.best_sha, index=lin.index + moved)
        return WindowResult(scope, lin.best, state.best, state.best_sha,
                            trials=sum(int(t.outcome.cost.get("trials", 1)) for t in history),
                            seconds=sum(float(t.outcome.cost.get("seconds", 0.0)) for t in history),
                            hook_counts=window_hook_counts(rt, scope, 1, mechanisms),
                            final=WindowStart(final, dict(start.active)), steps=moved,
                            observed=observed_best(rt, lin, final, rt.task.maximize))

    def screen(self, lineage: Lineage, candidate: list[ActiveMechanism], incumbent: list[ActiveMechanism],
               settings: Any) -> dict[str, Any]:
        """Screen a candidate active set against the incumbent one on simulated level 1 (levels/screen.py):
        a surrogate of the lineage's level-1 trials from the lineage's incumbent, and the task's own cheap instances.
        The level-1 policy simulated is the scripted baseline (a model would take seconds per proposal)."""
        from recur.core.edits import read_constants
        from recur.core.policy import ScriptedBackend
        from recur.levels.screen import INSTANCE_SEED, SharedScreens, fit_surrogate, policy_maker, screen

        rt = self.rt
        space = rt.task.space()
        points = []
        # the lineage's own trials, not the whole trace: what the run knew at this step, so a resumed run that
        # replays the step (with later trials already in the trace) screens exactly as the first one did
        for trial in rt.trials_of(lineage.trail.get(1, ())):
            point = trial.candidate.payload.get("point")
            if isinstance(point, dict):
                points.append((point, trial.outcome.metric if trial.outcome.ok else None))
        objectives: list[tuple[str, str, Any, dict[str, Any]]] = []
        constants = read_constants(rt.repo.read(lineage.head, rt.task.editable))
        start = {k: constants[k] for k in space if k in constants}
        # keyed by content, the points it is fitted to and its start (two arms can share a head and a trial
        # count; trial ids and commit shas differ between runs, and the key seeds the simulated runs), in
        # canonical JSON (a trial read back from the trace has its keys sorted); fitted once per key
        fitted = hashlib.sha256(json.dumps([points, start], sort_keys=True).encode()).hexdigest()[:16]
        if fitted not in self.surrogates:
            self.surrogates[fitted] = fit_surrogate(points, space, max(rt.threshold / 2.0, 1e-9), rt.seed)
        surrogate = self.surrogates[fitted]
        if surrogate is not None:
            objectives += [(f"surrogate-{fitted}-{i}", "surrogate", surrogate, start)
                           for i in range(settings.seeds)]
        # the same instances for every candidate of the run, so the incumbent arm's runs are reused
        objectives += [(f"instance-{i}", "instance", f, s)
                       for i, (f, s) in enumerate(rt.task.screen_instances(settings.seeds, INSTANCE_SEED))]
        proposals = rt.settings.get("proposals", 3)
        if self.shared_screens is None:
            from recur.core.workspace import default_cache_dir

            self.shared_screens = SharedScreens(default_cache_dir(), rt.task, proposals)
        both = list({m.name: m for m in incumbent + candidate}.values())
        invoker = rt.invoker_factory(both) if rt.invoker_factory else None
        try:
            make = policy_maker(lambda: ScriptedBackend(proposals), invoker, ScriptedBackend(proposals))
            return screen(space, objectives, make, candidate, incumbent, settings, rt.seed, rt.task.maximize,
                          cache=self.screen_cache, shared=self.shared_screens)
        finally:
            if invoker is not None and hasattr(invoker, "close"):
                invoker.close()
