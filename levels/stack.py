"""Building the level stack for ``--levels N`` and planning how its level-1 trials are spent.

The stack is level 1 under N-1 identical outer levels: no level is special-cased. Levels 3 and above also
get the bootstrapping proposer (ports of mechanisms found one level down).
"""
from __future__ import annotations

from typing import Any

from recur.levels.outer import LevelK
from recur.levels.runtime import Runtime
from recur.levels.window import Level1, WindowResult, WindowStart


class PlanError(ValueError):
    pass


def candidate_cost(level: int, window: int, meta_window: int, pairs: int) -> int:
    """Level-1 trials one candidate of ``level`` costs (candidate and control windows, ``pairs`` times)."""
    if level == 1:
        return 1
    child_window = window if level == 2 else meta_window
    return pairs * 2 * child_window * candidate_cost(level - 1, window, meta_window, pairs)


def plan(levels: int, max_trials: int | None, baseline: int, window: int, meta_window: int, pairs: int,
         top_candidates: int = 2) -> tuple[int, int, str]:
    """(top-level steps, level-1 trials needed, a printable plan); refuses a plan that cannot fit."""
    per = candidate_cost(levels, window, meta_window, pairs)
    if max_trials is None:
        steps = top_candidates if levels > 1 else 20 - baseline
        max_trials = baseline + steps * per
    steps = (max_trials - baseline) // per
    parts = []
    for k in range(levels, 1, -1):
        n = steps if k == levels else (window if k == 2 else meta_window)
        if k == levels:
            parts.append(f"level {k}: {n} candidates")
        if k - 1 >= 2:
            parts.append(f"level {k - 1}: {meta_window} candidates")
    if levels >= 2:
        text = (" × ".join(parts) + f" × {pairs * 2} windows (candidate + control) × {window} level-1 trials"
                f" = {steps * per} trials + {baseline} baseline = {steps * per + baseline}")
    else:
        text = f"level 1: {baseline} baseline + {max_trials - baseline} trials"
        steps = max_trials - baseline
    if steps < 1:
        raise PlanError(f"--max-trials {max_trials} cannot fit one level-{levels} candidate: it needs {per} level-1 "
                        f"trials plus {baseline} baseline ({baseline + per}); raise --max-trials or lower "
                        f"--window/--meta-window")
    return steps, max_trials, text


def build(rt: Runtime, levels: int, window: int, meta_window: int, pairs: int) -> Any:
    from recur.meta_meta.bootstrap import PortProposer

    runner: Any = Level1(rt)
    for k in range(2, levels + 1):
        extra = [PortProposer(rt.store)] if k >= 3 else []
        runner = LevelK(rt, k, runner, window if k == 2 else meta_window, pairs, extra)
    return runner


def run_stack(rt: Runtime, opts: Any, base: WindowResult, steps: int) -> WindowResult:
    top = build(rt, opts.levels, opts.window, opts.meta_window, opts.pairs)
    active = {lv: rt.store_active(lv) for lv in range(1, opts.levels + 1)}
    result = top.run_window(f"{rt.run_id}/L{opts.levels}", WindowStart(base.best_sha, base.best_metric, active), steps)
    if result.best_sha:
        rt.repo.set_branch(rt.main_branch, result.best_sha)
        rt.repo.sync_worktree(rt.main_branch)
    return result
