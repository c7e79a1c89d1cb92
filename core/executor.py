"""Trial executor: every trial is a subprocess in its own process group, with rlimits and a deadline.

Past the deadline the whole group gets SIGTERM, then SIGKILL after a grace period, so a train.py that ignores
SIGTERM or forks children still dies. After every trial the group is killed again to reap stragglers that the
trial left behind. Output goes to a per-trial log file; the caller gets the exit code, whether it timed out,
the wall time and the log tail. A local pool runs K trials at once, pinning one GPU per worker when GPUs exist.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from recur.core.task import TrialSpec

TERM_GRACE_S = 3.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class ExecResult:
    returncode: int | None
    timed_out: bool
    seconds: float
    log_path: Path
    node: str | None = None  # the machine that ran it (the trace records it; Ray may place trials anywhere)
    gpu: str | None = None  # its CUDA_VISIBLE_DEVICES, where GPUs exist

    def log_text(self, max_bytes: int = 2_000_000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - max_bytes))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _limits(spec: TrialSpec):
    def apply() -> None:
        if spec.memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (spec.memory_bytes, spec.memory_bytes))
        if spec.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (spec.cpu_seconds, spec.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if prctl is not None:
            die_with_parent(prctl)

    prctl = _prctl()  # looked up here, in the parent: a forked child of a threaded process must not dlopen
    return apply


@functools.lru_cache(maxsize=1)
def _prctl() -> Any:
    """libc's ``prctl`` (None where there is none)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(prctl: Any) -> None:
    """Ask Linux to SIGKILL this process when the thread that started it dies (``PR_SET_PDEATHSIG``): a trial
    runs in its own session, so without this a ``kill -9`` of recur would leave train.py (and its GPU) running
    until its own budget ends. Runs in the child between fork and exec."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect: nobody is left to wait for us
        os._exit(1)


def kill_group(pgid: int, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to empty, then SIGKILL whatever is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the group: a reaped leader's children may linger."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter(["status"]):  # killpg(0) also counts zombies; psutil tells them apart
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def run_trial(spec: TrialSpec, log_path: Path, extra_env: dict[str, str] | None = None) -> ExecResult:
    """Run one trial to completion or deadline. Never raises for what the trial does; only for a missing program."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env, **(extra_env or {})}
    env.setdefault("PYTHONUNBUFFERED", "1")
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            spec.argv, cwd=spec.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_limits(spec),
        )
        expired = threading.Event()

        def deadline() -> None:  # a timer, not a polling wait: a fast trial returns the moment it exits
            expired.set()
            kill_group(proc.pid)

        timer = threading.Timer(spec.deadline_s, deadline)
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
            timed_out = expired.is_set()
            if not timed_out:
                kill_group(proc.pid, grace_s=0.5)  # reap children the trial left running
            if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave nothing behind
                kill_group(proc.pid, grace_s=0.5)
                proc.wait()
    seconds = time.monotonic() - start
    if timed_out:
        with open(log_path, "ab") as log:
            log.write(f"\n[recur] killed at the {spec.deadline_s:.0f} s deadline\n".encode())
    return ExecResult(returncode=proc.returncode, timed_out=timed_out, seconds=seconds, log_path=log_path)


def gpu_count() -> int:
    """Number of NVIDIA GPUs, without importing torch (the parent process stays light)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


class WorkerPool:
    """K trial slots. Each slot that runs a trial gets its own GPU (CUDA_VISIBLE_DEVICES) when GPUs exist."""

    def __init__(self, workers: int = 1, gpus: int | None = None):
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.workers = workers
        self.gpus = gpu_count() if gpus is None else gpus
        self._free = list(range(workers))
        self._cond = threading.Condition()

    def run(self, spec: TrialSpec, log_path: Path) -> ExecResult:
        with self._cond:
            while not self._free:
                self._cond.wait()
            slot = self._free.pop(0)
        try:
            env = {"CUDA_VISIBLE_DEVICES": str(slot % self.gpus)} if self.gpus else {}
            result = run_trial(spec, log_path, env)
            result.node, result.gpu = socket.gethostname(), env.get("CUDA_VISIBLE_DEVICES")
            return result
        finally:
            with self._cond:
                self._free.append(slot)
                self._cond.notify()

    def close(self) -> None:
        """Nothing to stop: the local pool holds no processes between trials (RayPool's close stops a cluster)."""


def make_pool(executor: str, workers: int, ray_address: str | None = None) -> Any:
    """The pool of ``--executor local|ray``: trial slots on this machine, or Ray tasks on a cluster."""
    if executor == "ray":
        from recur.core.ray_pool import RayPool

        return RayPool(workers, ray_address)
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}: local or ray")
    if ray_address:
        raise ValueError("--ray-address needs --executor ray")
    return WorkerPool(workers)
