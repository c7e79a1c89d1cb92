"""Levels 2..N on the synthetic task: real store, real sandbox, real subprocess trials."""
from __future__ import annotations

import pytest

from conftest import run_cli
from recur.core.trace import TraceStore
from recur.levels.run import Run, RunOptions
from recur.levels.stack import PlanError, plan, window_length
from recur.mechanism_store.store import MechanismStore


@pytest.mark.long(seconds=34)
def test_levels_3_run_leaves_lineage_and_a_port(workdir) -> None:
    # structure, not search quality: seeds 0, 1 and 2 all reach a port at this budget (checked 2026-12-03). No
    # screen and short races that can promote at 2 pairs (alpha 0.25, no held-out pairs): level 3 races only
    # where a race can reach a verdict (outer.py verdict_trials), here 16 of the 80 trials
    opts = RunOptions(model="scripted", levels=3, task="synthetic", seed=1, window=2, meta_window=2, max_trials=80,
                      screen_seeds=0, max_pairs=2, alpha=0.25, confirm_pairs=0)
    with Run(workdir, opts, resume=False) as run:
        run.execute()
    store = MechanismStore(workdir / ".recur" / "store", create=False)
    l1, l2 = store.list(level=1), store.list(level=2)
    assert l1 and l2
    ports = [m for m in l2 if m.parent and m.parent.startswith("mech/L1/")]
    assert ports, "level 3 should have proposed a port of a level-1 mechanism"
    for m in l1 + l2:
        assert {"Level", "Status", "Base"} <= set(m.trailers)
        assert m.status in ("promoted", "confirmed", "rejected", "inactive", "unraced", "screened", "unsafe", "budget")
        assert "Trials" in m.trailers or m.status in ("unsafe", "inactive")
    assert "port" in store.repo.git.log("--all", "--oneline", "--graph")
    trace = TraceStore(workdir / ".recur" / "trace.db")
    charged = sum(t["outcome"]["cost"].get("trials", 1) for t in trace.trials(level=1))
    assert charged == 80  # the whole budget, reused trials free
    for m in l1 + l2:  # whatever a run keeps changed decisions in its race
        if m.status in ("promoted", "confirmed"):
            assert int(m.trailers["Trials"]) > 0 and "=0" not in m.trailers["Hook-Effects"].replace("=0,", "x")
    assert store.repo.git.fsck() == ""


def test_levels_4_run_by_the_same_code(workdir) -> None:
    opts = RunOptions(model="scripted", levels=4, task="synthetic", window=1, meta_window=2, max_trials=3 + 20, seed=1,
                      screen_seeds=0)
    with Run(workdir, opts, resume=False) as run:
        summary = run.execute()
    trace = TraceStore(workdir / ".recur" / "trace.db")
    levels = {t["level"] for t in trace.trials(summary["run_id"])}
    assert levels == {1, 2, 3, 4}
    assert summary["trials"] == 23


def test_plan_sizes_windows_and_refuses_what_cannot_fit() -> None:
    total, text = plan(3, None, 3, 3, 4, 8)
    assert total == 50 and "windows of level 1: 3, level 2: 12 level-1 trials" in text
    assert window_length(3, 3, 4) == 48
    with pytest.raises(PlanError, match="cannot fit"):
        plan(3, 5, 3, 3, 4, 8)


def test_unfit_plan_is_one_clear_line(workdir) -> None:
    res = run_cli("run", "--model", "scripted", "--levels", "3", "--task", "synthetic", "--max-trials", "4", cwd=workdir)
    assert res.returncode == 1 and "cannot fit" in res.stderr and "Traceback" not in res.stderr
