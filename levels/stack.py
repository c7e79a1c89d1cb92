"""Building the level stack for ``--levels N`` and planning its level-1 budget.

The stack is level 1 under N-1 identical outer levels: no level is special-cased. Levels 3 and above also
get the bootstrapping proposer (ports of mechanisms found one level down). Every level moves the same
lineage; the budget is level-1 trials for the whole run, and a window of level k is ``window *
meta_window**(k-1)`` level-1 trials (a level-k candidate races in pairs of level-(k-1) windows).
"""
from __future__ import annotations

from typing import Any

from recur.levels.outer import LevelK, RaceSettings
from recur.levels.runtime import Runtime
from recur.levels.screen import ScreenSettings
from recur.levels.window import Level1, WindowResult, WindowStart

DEFAULT_TRIALS = {1: 20}  # whole-run level-1 trials, baselines included; 50 for two or more levels
DEFAULT_TRIALS_OUTER = 50


class PlanError(ValueError):
    pass


def window_length(level: int, window: int, meta_window: int) -> int:
    """Level-1 trials in one window of ``level`` (level 1: ``window``)."""
    return window * meta_window ** (level - 1)


def plan(levels: int, max_trials: int | None, baseline: int, window: int, meta_window: int, max_pairs: int,
         alpha: float = 0.05) -> tuple[int, str]:
    """(level-1 trials of the whole run, a printable plan); refuses a budget with no room for the search."""
    total = max_trials if max_trials is not None else DEFAULT_TRIALS.get(levels, DEFAULT_TRIALS_OUTER)
    need = baseline + (1 if levels == 1 else window)
    if total < need:
        raise PlanError(f"--max-trials {total} cannot fit {baseline} baseline trials and "
                        + ("one trial" if levels == 1 else f"one level-1 window of {window}")
                        + f" ({need}); raise --max-trials or lower --baseline-repeats/--window")
    text = f"level 1: {baseline} baseline + {total - baseline} trials"
    if levels >= 2:
        windows = ", ".join(f"level {k}: {window_length(k, window, meta_window)}" for k in range(1, levels))
        text = (f"levels {levels}..1 on one lineage: {total} level-1 trials ({baseline} baseline); windows of "
                f"{windows} level-1 trials; candidates race their incumbent in blocks of two windows on the line "
                f"(up to {max_pairs} blocks, alpha {alpha:g}, then held-out blocks)")
    return total, text


def screen_settings(opts: Any) -> ScreenSettings | None:
    seeds = getattr(opts, "screen_seeds", 0)
    if not seeds:
        return None
    return ScreenSettings(seeds, opts.screen_horizon, opts.screen_alpha, getattr(opts, "shortlist", 4))


def build(rt: Runtime, levels: int, opts: Any, top: int | None = None) -> Any:
    """Level ``levels`` over the levels below it; ``top`` (default ``levels``) is the level that writes main."""
    from recur.meta_meta.bootstrap import PortProposer

    runner: Any = Level1(rt)
    for k in range(2, levels + 1):
        race = RaceSettings(window_length(k - 1, opts.window, opts.meta_window), opts.max_pairs, opts.alpha,
                            opts.confirm_pairs, screen_settings(opts))
        extra = [PortProposer(rt.store)] if k >= 3 else []
        runner = LevelK(rt, k, runner, race, top=(k == (top or levels)), extra=extra)
    return runner


def run_stack(rt: Runtime, opts: Any, base: WindowResult) -> WindowResult:
    assert base.final is not None
    top = build(rt, opts.levels, opts)
    active = {lv: rt.store_active(lv) for lv in range(1, opts.levels + 1)}
    result = top.run_window(f"{rt.run_id}/L{opts.levels}", WindowStart(base.final.lineage, active), None)
    promote_confirmed(rt, result)
    if result.best_sha:
        rt.repo.set_branch(rt.main_branch, result.best_sha)
        rt.repo.sync_worktree(rt.main_branch)
    return result


def promote_confirmed(rt: Runtime, result: WindowResult) -> None:
    """Promote what a nested window confirmed and the line kept active to the end of the run.

    A level below the top marks its race winners ``confirmed`` (won the race and its held-out blocks) and
    passes them on along the line; the top level is the one that writes ``main``, so it does that here for
    every confirmed mechanism still active when the run ends (idempotent on resume)."""
    if result.final is None:
        return
    from recur.mechanism_store.store import StoreError

    for ms in result.final.active.values():
        for m in ms:
            try:
                info = rt.store.info(m.name)
            except StoreError:
                continue  # not a store mechanism (a test's planted module)
            if info.status == "confirmed":
                rt.store.promote(info.branch)
