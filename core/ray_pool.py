"""Trials as Ray tasks: ``--executor ray`` runs each trial on whichever node of a Ray cluster has room.

A trial is still the local executor's ``run_trial`` (own process group, rlimits, deadline that kills the whole
group, PR_SET_PDEATHSIG), called inside a Ray task on the chosen node; the task asks for one GPU where the
cluster has GPUs, so Ray pins it (``CUDA_VISIBLE_DEVICES``) and never puts two trials on one GPU. The trial's
folder travels with the task (its files are small: train.py, prepare.py) and is recreated on the node; the log
comes back and is written where the local executor writes it. Folders the trial's environment names outside
its own folder (the prepared data, RECUR_DATA_DIR) must exist at the same path on every node (a shared file
system, or the cache prepared on each node); a node that lacks one fails the trial with that message.

Without ``--ray-address`` recur starts a local cluster on 127.0.0.1 (``ray.init``) and stops it at the end.
Ray is an optional extra: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from recur.core.executor import ExecResult, run_trial
from recur.core.task import TrialSpec

MAX_FOLDER_BYTES = 64 * 1024 * 1024  # a trial folder is a few source files; more means data in the wrong place


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached: one clear line for the user."""


def _folder_files(folder: Path) -> dict[str, bytes]:
    files, total = {}, 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        total += len(data)
        if total > MAX_FOLDER_BYTES:
            raise ValueError(f"trial folder {folder} holds more than {MAX_FOLDER_BYTES >> 20} MiB: put data in the "
                             "task's prepared data folder, not next to train.py")
        files[path.relative_to(folder).as_posix()] = data
    return files


def _on_node(argv: list[str], files: dict[str, bytes], env: dict[str, str], deadline_s: float,
             memory_bytes: int | None, cpu_seconds: int | None) -> dict[str, Any]:
    """Body of the Ray task: recreate the folder on this node, run the trial there, return its log and result."""
    missing = [f"{k}={v}" for k, v in env.items() if k.endswith("_DIR") and v.startswith("/") and not Path(v).exists()]
    with tempfile.TemporaryDirectory(prefix="recur-trial-") as tmp:
        folder = Path(tmp) / "trial"
        for name, data in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        folder.mkdir(parents=True, exist_ok=True)
        log = Path(tmp) / "trial.log"
        node = socket.gethostname()
        if missing:
            log.write_text(f"[recur] node {node} lacks {', '.join(missing)}: prepare the data on every node or "
                           "put the cache folder on a shared file system\n")
            return {"returncode": 2, "timed_out": False, "seconds": 0.0, "log": log.read_bytes(), "node": node,
                    "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
        spec = TrialSpec(argv=argv, cwd=folder, env=env, deadline_s=deadline_s, memory_bytes=memory_bytes,
                         cpu_seconds=cpu_seconds)
        result = run_trial(spec, log)
        return {"returncode": result.returncode, "timed_out": result.timed_out, "seconds": result.seconds,
                "log": log.read_bytes(), "node": node, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}


class RayPool:
    """The worker pool of ``--executor ray``: at most ``workers`` trials at once, each a Ray task."""

    def __init__(self, workers: int = 1, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise RayUnavailable('--executor ray needs Ray: pip install -e ".[ray]"') from None
        self.ray = ray
        self.workers = max(1, int(workers))
        self.started_here = not ray.is_initialized() and address is None
        try:
            if address is None:
                if not ray.is_initialized():  # a local cluster on 127.0.0.1, stopped again by close()
                    stop_orphaned_clusters()
                    ray.init(num_cpus=max(self.workers, os.cpu_count() or 1), include_dashboard=False,
                             object_store_memory=128 * 1024 * 1024, log_to_driver=False, logging_level="ERROR",
                             _node_ip_address="127.0.0.1")
                    remember_cluster()
            else:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            raise RayUnavailable(f"cannot start or reach the Ray cluster{f' at {address}' if address else ''}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        self._remote = ray.remote(_on_node).options(num_cpus=1, num_gpus=1 if self.gpus else 0, max_retries=0)
        self._slots = threading.BoundedSemaphore(self.workers)

    def run(self, spec: TrialSpec, log_path: Path) -> ExecResult:
        if self.started_here:
            remember_cluster()  # Ray's agents and workers start after init: keep the list whole
        with self._slots:
            ref = self._remote.remote(list(spec.argv), _folder_files(Path(spec.cwd)), dict(spec.env), spec.deadline_s,
                                      spec.memory_bytes, spec.cpu_seconds)
            try:
                out = self.ray.get(ref)
            except BaseException:
                self.ray.cancel(ref, force=True)  # Ctrl-C / SIGTERM: the task's worker dies, its trial with it
                raise
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(out["log"])
        return ExecResult(out["returncode"], out["timed_out"], out["seconds"], log_path, node=out["node"], gpu=out["gpu"])

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
            _registry().unlink(missing_ok=True)


# A local cluster is made of this process's descendants (gcs_server, raylet, agents, workers). After a kill -9 of
# recur the server and raylet go, but Ray's agents were seen to linger (~180 MB); the next local start stops them.
def _registry(pid: int | None = None) -> Path:
    from recur.core.workspace import default_cache_dir

    return default_cache_dir() / "ray-local" / f"{os.getpid() if pid is None else pid}.json"


def remember_cluster() -> None:
    """Write the (pid, start time) of every process of the local cluster this process started."""
    import json

    import psutil

    procs = [(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)]
    path = _registry()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(procs))


def stop_orphaned_clusters() -> None:
    """Kill what is left of local clusters whose recur process is gone (the same pid and start time only, so a
    reused pid is never hit)."""
    import json

    import psutil

    folder = _registry().parent
    for path in folder.glob("*.json") if folder.is_dir() else []:
        if path.stem.isdigit() and psutil.pid_exists(int(path.stem)):
            continue  # its recur is still running
        try:
            procs = json.loads(path.read_text())
        except (OSError, ValueError):
            procs = []
        for pid, started in procs:
            try:
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(started)) < 0.01:
                    proc.kill()
            except (psutil.Error, ValueError, TypeError):
                continue
        path.unlink(missing_ok=True)
