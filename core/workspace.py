"""A workspace is the ``.recur/`` folder of a working directory: trace, store, run worktrees, lock.

One run per workspace: ``recur run`` holds an exclusive lock (``filelock``, an ``flock``) on ``.recur/lock`` for its lifetime, so a
second run refuses at once with a clear message, and a run killed with ``kill -9`` releases it automatically.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import filelock


def default_cache_dir() -> Path:
    """Where prepared data and crash reports go: ``$RECUR_CACHE_DIR`` or ``~/.cache/recur``."""
    return Path(os.environ.get("RECUR_CACHE_DIR") or Path.home() / ".cache" / "recur")


class WorkspaceLocked(Exception):
    """Another recur run holds this workspace."""


class Workspace:
    def __init__(self, workdir: Path | str | None = None):
        base = Path(workdir or ".").resolve()
        self.root = base if base.name == ".recur" else base / ".recur"
        self._lock: filelock.FileLock | None = None

    @property
    def trace_path(self) -> Path:
        return self.root / "trace.db"

    @property
    def store_path(self) -> Path:
        return self.root / "store"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def exists(self) -> bool:
        return self.trace_path.exists()

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        gitignore = self.root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")  # keep a user's repo clean if they run recur inside it

    def lock(self) -> None:
        """Take the workspace lock or raise WorkspaceLocked naming the holder."""
        self.create()
        lock = filelock.FileLock(self.root / "lock", timeout=0)  # the kernel drops it when the holder dies
        holder = self.root / "lock.holder"  # filelock truncates its own file, so who holds it is kept beside
        try:
            lock.acquire()
        except filelock.Timeout:
            try:
                who = holder.read_text().strip()
            except OSError:
                who = ""
            raise WorkspaceLocked(
                f"workspace {self.root} is in use by a running recur ({who or 'another process'}); wait for it "
                f"to finish, or use another --workdir"
            ) from None
        holder.write_text(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        self._lock = lock

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
