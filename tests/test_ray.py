"""--executor ray: trials as tasks of a real local Ray cluster (started by recur on 127.0.0.1 and stopped at the
end), deadlines that kill the whole trial group on the node, the node in the trace, and resume after kill -9."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import RECUR, assert_each_step_once, kill_9_after, run_cli
from recur.core.task import TrialSpec
from recur.core.trace import TraceStore

def _ray_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if ("ray::" in text or "raylet" in text or "gcs_server" in text) and p.pid != os.getpid():
            out.append(p)
    return out


def test_a_run_on_a_local_ray_cluster_records_each_trials_node_and_stops_the_cluster(workdir: Path) -> None:
    res = run_cli("run", "--task", "synthetic", "--model", "scripted", "--executor", "ray", "--workers", "2",
                  "--max-trials", "8", cwd=workdir, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    trace = TraceStore(workdir / ".recur" / "trace.db")
    trials = trace.trials(trace.run()["id"], level=1)
    assert len(trials) == 8 and all(t["status"] == "ok" for t in trials)
    assert all(t["outcome"]["info"]["node"] for t in trials)
    assert trace.run()["config"]["executor"] == "ray"
    time.sleep(1)
    assert not [p for p in _ray_processes() if p.status() != psutil.STATUS_ZOMBIE], "the local cluster outlived the run"


def test_the_deadline_kills_the_whole_trial_group_on_the_node(tmp_path: Path) -> None:
    from recur.core.ray_pool import RayPool

    folder = tmp_path / "trial"
    folder.mkdir()
    marker = f"recur-ray-test-{os.getpid()}"
    (folder / "train.py").write_text(  # ignores SIGTERM and leaves a child behind: only SIGKILL of the group ends it
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n")
    pool = RayPool(1)
    try:
        result = pool.run(TrialSpec([sys.executable, "train.py"], folder, deadline_s=1.5), tmp_path / "log.txt")
    finally:
        pool.close()
    assert result.timed_out and result.node
    assert "started" in (tmp_path / "log.txt").read_text() and "deadline" in (tmp_path / "log.txt").read_text()
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not left, "a process of the trial's group outlived the deadline"


@pytest.mark.long(seconds=24)
def test_resume_after_kill_9_under_ray_loses_and_repeats_no_trial(workdir: Path) -> None:
    total = 60
    proc = subprocess.Popen([RECUR, "run", "--task", "synthetic", "--model", "scripted", "--executor", "ray",
                             "--max-trials", str(total)], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = workdir / ".recur" / "trace.db"
    kill_9_after(proc, db, finished=15)
    res = run_cli("run", "--model", "scripted", "--resume", cwd=workdir, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    trace = TraceStore(db)
    run = trace.run()
    trials = trace.trials(run["id"], level=1)
    assert run["status"] == "finished" and len(trials) == total
    assert_each_step_once(trials)
    time.sleep(1)
    assert not [p for p in _ray_processes() if p.status() != psutil.STATUS_ZOMBIE], \
        "the killed run's cluster (or the resumed one's) is still running"
