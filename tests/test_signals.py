"""Stopping recur: SIGTERM/SIGHUP/Ctrl-C end the running trial's process group and say how to continue; after
``kill -9`` of recur no trial outlives it. Real `recur run` processes training a real tiny GPT (cpu-tiny), real
signals, processes found in /proc."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import RECUR
from recur.core.trace import TraceStore


def _trainers(root: Path) -> list[int]:
    """PIDs of train.py processes working under ``root`` (a trial runs in its own session, so not our children)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"train.py" in cmd and cwd.startswith(str(root)) and state != "Z":
            pids.append(int(pid))
    return pids


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _start_training(workdir: Path) -> subprocess.Popen:
    """`recur run` on cpu-tiny with trials long enough to be caught running (its baseline trial trains 60 s)."""
    # as from a terminal: SIGINT at its default even when the test runner inherited it ignored (a job started
    # with `&` from a script ignores it, and Python then installs no Ctrl-C handler at all)
    proc = subprocess.Popen([RECUR, "run", "--task", "gpt_pretrain", "--preset", "cpu-tiny", "--model", "scripted",
                             "--trial-seconds", "60", "--max-trials", "5"], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if not _wait_for(lambda: _trainers(workdir), 120):
        proc.kill()
        pytest.fail("no train.py started within 120 s: " + (proc.communicate()[1] or "")[-2000:])
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_ends_the_trial_and_says_how_to_continue(workdir: Path, sig: signal.Signals) -> None:
    proc = _start_training(workdir)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # leave nothing running if the signal was not obeyed
    assert proc.returncode == 128 + sig
    name = "Ctrl-C" if sig == signal.SIGINT else sig.name
    assert f"recur: interrupted by {name}" in err and "recur run --resume" in err and "Traceback" not in err, err
    assert _wait_for(lambda: not _trainers(workdir), 10), "the trial outlived recur"
    assert TraceStore(workdir / ".recur" / "trace.db").run()["status"] == "interrupted"


def test_kill_9_of_recur_leaves_no_trial_behind(workdir: Path) -> None:
    proc = _start_training(workdir)
    trainers = _trainers(workdir)
    proc.kill()  # SIGKILL recur alone: the trial's own session does not receive it
    proc.wait(timeout=10)
    assert _wait_for(lambda: not _trainers(workdir), 10), f"train.py {trainers} outlived kill -9 of recur"
