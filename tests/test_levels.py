"""Levels 2..N on the synthetic task: real store, real sandbox, real subprocess trials."""
from __future__ import annotations

import git

from conftest import run_cli
from recur.core.trace import TraceStore
from recur.levels.run import Run, RunOptions
from recur.levels.stack import PlanError, plan
from recur.mechanism_store.store import MechanismStore

import pytest


def test_levels_3_offline_run_leaves_lineage_and_a_port(workdir) -> None:
    res = run_cli("run", "--model", "scripted", "--levels", "3", "--task", "synthetic", "--seed", "1", cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert "plan: level 3: 2 candidates" in res.stdout
    store = MechanismStore(workdir / ".recur" / "store", create=False)
    l1, l2 = store.list(level=1), store.list(level=2)
    assert l1 and l2
    ports = [m for m in l2 if m.parent and m.parent.startswith("mech/L1/")]
    assert ports, "level 3 should have proposed a port of a level-1 mechanism"
    for m in l1 + l2:
        assert {"Level", "Status", "Base"} <= set(m.trailers)
        assert m.status in ("promoted", "rejected", "inactive", "unsafe")
        assert "Score" in m.trailers or m.status == "unsafe"
    graph = store.repo.git.log("--all", "--oneline", "--graph")
    assert "port" in graph
    trace = TraceStore(workdir / ".recur" / "trace.db")
    calls = trace.hook_calls()
    promoted = [m for m in l1 + l2 if m.status == "promoted"]
    assert promoted, "seed 1 promotes a mechanism: its hook calls must be in the trace"
    for m in promoted:
        assert sum(h["calls"] for h in calls if h["mechanism"] == m.name) > 0
    assert store.repo.git.fsck() == ""


def test_levels_4_run_by_the_same_code(workdir) -> None:
    opts = RunOptions(model="scripted", levels=4, task="synthetic", window=2, meta_window=1, max_trials=2 + 16, seed=1)
    with Run(workdir, opts, resume=False) as run:
        summary = run.execute()
    trace = TraceStore(workdir / ".recur" / "trace.db")
    levels = {t["level"] for t in trace.trials(summary["run_id"])}
    assert levels == {1, 2, 3, 4}
    assert summary["trials"] == 18


def test_plan_refuses_what_cannot_fit() -> None:
    steps, total, text = plan(3, None, 2, 3, 2, 1)
    assert (steps, total) == (2, 50) and "= 48 trials + 2 baseline = 50" in text
    with pytest.raises(PlanError, match="cannot fit"):
        plan(3, 20, 2, 3, 2, 1)


def test_unfit_plan_is_one_clear_line(workdir) -> None:
    res = run_cli("run", "--model", "scripted", "--levels", "3", "--task", "synthetic", "--max-trials", "10", cwd=workdir)
    assert res.returncode == 1 and "cannot fit" in res.stderr and "Traceback" not in res.stderr
