"""The executor kills what it must: hanging trials, SIGTERM-ignoring trials and their forked children."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from recur.core.executor import WorkerPool, run_trial
from recur.core.task import TrialSpec


def _script(tmp_path: Path, body: str) -> TrialSpec:
    (tmp_path / "train.py").write_text(textwrap.dedent(body))
    return TrialSpec(argv=[sys.executable, "train.py"], cwd=tmp_path, deadline_s=1.5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_hanging_trial_is_killed_at_deadline(tmp_path: Path) -> None:
    spec = _script(tmp_path, "import time\nprint('started', flush=True)\nwhile True: time.sleep(1)\n")
    start = time.monotonic()
    res = run_trial(spec, tmp_path / "log.txt")
    assert res.timed_out
    assert time.monotonic() - start < spec.deadline_s + 5
    assert "started" in res.log_text() and "deadline" in res.log_text()


def test_sigterm_ignoring_trial_and_forked_child_die(tmp_path: Path) -> None:
    spec = _script(tmp_path, """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True: time.sleep(1)
        open('child.pid', 'w').write(str(pid))
        print('forked', pid, flush=True)
        while True: time.sleep(1)
    """)
    res = run_trial(spec, tmp_path / "log.txt")
    assert res.timed_out
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the forked child survived the group kill"


def test_child_left_behind_by_a_finished_trial_is_reaped(tmp_path: Path) -> None:
    spec = _script(tmp_path, """
        import os, time
        pid = os.fork()
        if pid == 0:
            time.sleep(60); os._exit(0)
        open('child.pid', 'w').write(str(pid))
        print('val_bpb: 1.0')
    """)
    res = run_trial(spec, tmp_path / "log.txt")
    assert not res.timed_out and res.returncode == 0
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_crash_exit_code_and_log(tmp_path: Path) -> None:
    res = run_trial(_script(tmp_path, "raise RuntimeError('boom')\n"), tmp_path / "log.txt")
    assert res.returncode != 0 and not res.timed_out
    assert "RuntimeError: boom" in res.log_text()


def test_memory_rlimit_turns_a_bomb_into_a_failure(tmp_path: Path) -> None:
    spec = _script(tmp_path, "x = bytearray(2 * 1024 ** 3)\nprint('allocated')\n")
    spec.memory_bytes = 512 * 1024 ** 2
    res = run_trial(spec, tmp_path / "log.txt")
    assert res.returncode != 0
    assert "MemoryError" in res.log_text()


def test_pool_pins_gpus_per_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    spec = _script(tmp_path, "import os\nprint('cuda=' + os.environ.get('CUDA_VISIBLE_DEVICES', 'none'))\n")
    pool = WorkerPool(workers=2, gpus=2)
    res = pool.run(spec, tmp_path / "log.txt")
    assert "cuda=0" in res.log_text()  # the first free slot gets the first GPU
    cpu = WorkerPool(workers=1, gpus=0).run(spec, tmp_path / "log2.txt")
    assert "cuda=none" in cpu.log_text()  # no GPUs: nothing set
