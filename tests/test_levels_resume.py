"""Outer-level behaviour: inactive and harmful mechanisms are not promoted; kill -9 inside a level-3 window
resumes to the same store and trace counts as an uninterrupted run with the same seed."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import RECUR
from recur.core.trace import TraceStore
from recur.levels.outer import LevelK
from recur.levels.run import Run, RunOptions
from recur.levels.window import Level1, WindowStart
from recur.mechanism_store.builtin import builtin_source
from recur.mechanism_store.store import MechanismStore

NEVER_CALLED_SELECT = '''"""A second selector: the level calls only the first one, so this one is never exercised."""
from recur.core.mechanism_api import Mechanism


class LastSelector(Mechanism):
    """Select the last proposal."""

    def select(self, proposals, history, rng):
        return proposals[-1]
'''

DIVERGE = '''"""A harmful mechanism: always proposes every free float parameter at its upper bound."""
from recur.core.mechanism_api import Mechanism


class Extremes(Mechanism):
    """Replace the policy's proposals with the same extreme point, every time."""

    def propose(self, context, rng):
        space = context.get("space", {})
        frozen = context.get("frozen", [])
        params = {}
        for name in sorted(space):
            if space[name].get("type") == "float" and name not in frozen:
                params[name] = space[name]["high"]
        if not params:
            return list(context.get("proposals", []))
        return [{"kind": ",".join(sorted(params)), "payload": {"params": params}, "rationale": "extremes"}]
'''


class Planted:
    """Offers one ready-made mechanism as the outer level's first candidate."""

    def __init__(self, source: str, family: str):
        self.source, self.family = source, family

    def propose(self, level, step, history):
        return {"family": self.family, "slug": self.family, "source": self.source, "params": {}, "model": "test",
                "diagnosis": "planted by a test"} if step == 0 else None


def _evaluate_planted(workdir: Path, source: str, family: str, promoted_l1: list[str], seed: int = 2, window: int = 4):
    opts = RunOptions(model="scripted", task="synthetic", levels=2, window=window, seed=seed)
    with Run(workdir, opts, resume=False) as run:
        rt = run.setup()
        for slug in promoted_l1:  # mechanisms already promoted at level 1, ahead of the candidate
            rt.store.promote(rt.store.add_candidate(1, slug, builtin_source(slug)).branch)
        active_l1 = rt.store_active(1)
        base = run.baseline(rt)
        level2 = LevelK(rt, 2, Level1(rt), child_steps=window, pairs=1, extra=[Planted(source, family)])
        level2.run_window(f"{rt.run_id}/L2", WindowStart(base.best_sha, base.best_metric, {1: active_l1}), steps=1)
        row = TraceStore(workdir / ".recur" / "trace.db").trials(rt.run_id, level=2)[0]
        return row, MechanismStore(workdir / ".recur" / "store").info(row["candidate"]["payload"]["branch"])


def test_a_mechanism_whose_hook_is_never_called_is_inactive(workdir: Path) -> None:
    row, info = _evaluate_planted(workdir, NEVER_CALLED_SELECT, "last_selector", ["ucb_bandit"])  # first selector decides
    assert row["status"] == "inactive" and not row["kept"]
    assert info.status == "inactive" and "select=0" in info.trailers["Hook-Calls"]


def test_a_mechanism_that_makes_search_worse_is_not_promoted(workdir: Path) -> None:
    row, info = _evaluate_planted(workdir, DIVERGE, "diverge", [])
    assert not row["kept"] and info.status != "promoted"
    assert row["outcome"]["info"]["hook_calls"]["propose"] > 0
    assert row["outcome"]["info"]["pairs"][0]["cand_gain"] <= row["outcome"]["info"]["pairs"][0]["ctrl_gain"]


PLANTED = Path(__file__).parent / "mechanisms" / "planted"


def test_a_planted_helpful_mechanism_is_promoted_on_most_seeds(tmp_path: Path) -> None:
    """choice_sweep tries every untried categorical choice once; on the synthetic surface, where a wrong choice
    costs up to 0.25, that beats the scripted baseline's random flips (measured 7 of 8 seeds at window 12)."""
    source = (PLANTED / "choice_sweep.py").read_text()
    promoted, scores = 0, []
    for seed in range(6):
        row, info = _evaluate_planted(tmp_path / f"s{seed}", source, "choice_sweep", [], seed=seed, window=12)
        assert row["outcome"]["info"]["hook_calls"]["propose"] > 0  # it really ran, every time
        promoted += info.status == "promoted"
        scores.append(row["metric"])
    assert promoted >= 4, f"promoted on {promoted} of 6 seeds; scores {scores}"
    assert sum(scores) / len(scores) > 0


def _summary(workdir: Path) -> tuple:
    store = MechanismStore(workdir / ".recur" / "store", create=False)
    branches = sorted((m.branch, m.status, m.trailers.get("Score"), m.trailers.get("Hook-Calls")) for m in store.list())
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    levels = Counter(t["level"] for t in trace.trials(run_id))
    hooks = Counter()
    for h in trace.hook_calls(run_id):
        hooks[(h["mechanism"], h["hook"])] += h["calls"]
    assert all(t["status"] != "running" for t in trace.trials(run_id))
    return branches, dict(levels), dict(hooks)


def test_kill_9_inside_a_level_3_window_resumes_to_the_same_result(tmp_path: Path) -> None:
    args = ["run", "--model", "scripted", "--levels", "3", "--task", "synthetic", "--seed", "4", "--window", "2"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert subprocess.run([RECUR, *args], cwd=a, capture_output=True).returncode == 0
    proc = subprocess.Popen([RECUR, *args], cwd=b, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = b / ".recur" / "trace.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM trials WHERE level=2 AND status!='running'").fetchone()[0] >= 2:
                    break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    res = subprocess.run([RECUR, "run", "--resume"], cwd=b, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _summary(a) == _summary(b)
