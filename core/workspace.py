"""A workspace is the ``.recur/`` folder of a working directory: config, trace, store, run worktrees, lock.

One run per workspace: ``recur run`` holds an exclusive ``flock`` on ``.recur/lock`` for its lifetime, so a
second run refuses at once with a clear message, and a run killed with ``kill -9`` releases it automatically.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO


def default_cache_dir() -> Path:
    """Where prepared data and crash reports go: ``$RECUR_CACHE_DIR`` or ``~/.cache/recur``."""
    return Path(os.environ.get("RECUR_CACHE_DIR") or Path.home() / ".cache" / "recur")


class WorkspaceLocked(Exception):
    """Another recur run holds this workspace."""


class Workspace:
    def __init__(self, workdir: Path | str | None = None):
        base = Path(workdir or ".").resolve()
        self.root = base if base.name == ".recur" else base / ".recur"
        self._lock_fh: IO[str] | None = None

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
        path = self.root / "lock"
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise WorkspaceLocked(
                f"workspace {self.root} is in use by a running recur ({holder}); wait for it to finish, "
                f"or use another --workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
