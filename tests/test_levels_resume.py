"""kill -9 inside a level-3 window resumes to the same store and trace counts as an uninterrupted run with the same
seed (inactive, harmful and helpful mechanisms: tests/test_protocol.py)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import RECUR
from recur.core.trace import TraceStore
from recur.mechanism_store.store import MechanismStore


def _summary(workdir: Path) -> tuple:
    store = MechanismStore(workdir / ".recur" / "store", create=False)
    branches = sorted((m.branch, m.status, m.trailers.get("Score"), m.trailers.get("Hook-Calls"),
                       m.trailers.get("Hook-Effects")) for m in store.list())
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    levels = Counter(t["level"] for t in trace.trials(run_id))
    hooks = Counter()
    for h in trace.hook_calls(run_id):
        hooks[(h["mechanism"], h["hook"])] += h["calls"]
    assert all(t["status"] != "running" for t in trace.trials(run_id))
    return branches, dict(levels), dict(hooks)


@pytest.mark.long(seconds=30)
def test_kill_9_inside_a_level_3_window_resumes_to_the_same_result(tmp_path: Path) -> None:
    args = ["run", "--model", "scripted", "--levels", "3", "--task", "synthetic", "--seed", "4", "--window", "2",
            "--screen-seeds", "3", "--screen-horizon", "12"]  # the screen on (a resume must screen as the first run did), small
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    whole = subprocess.Popen([RECUR, *args], cwd=a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # beside b
    try:
        _kill_and_resume(args, b)
        _, err = whole.communicate(timeout=600)
    finally:
        if whole.poll() is None:
            whole.kill()
    assert whole.returncode == 0, err[-2000:]
    assert _summary(a) == _summary(b)


def _kill_and_resume(args: list[str], b: Path) -> None:
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
