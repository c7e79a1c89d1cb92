"""Shared fixtures: real workspaces in tmp dirs, the installed ``recur`` console script, fast synthetic runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECUR = shutil.which("recur") or str(Path(sys.executable).parent / "recur")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``recur`` console script."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([RECUR, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest tests first (``@pytest.mark.long(seconds=...)``, stable otherwise): with ``pytest -n`` a long test
    collected last would run alone at the end while the other workers idle."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("long")
        return float(mark.kwargs.get("seconds", 1)) if mark is not None else 0.0

    items.sort(key=seconds, reverse=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep prepared data out of the user's cache, shared across the session (preparing is slow)."""
    monkeypatch.setenv("RECUR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "recur-cache"))


def assert_each_step_once(trials: list[dict]) -> None:
    """After a kill and a resume: every trial finished, and each scope's steps run 0..n-1 with no gap or repeat."""
    assert len({t["id"] for t in trials}) == len(trials) and all(t["status"] != "running" for t in trials)
    by_scope: dict[str, list[int]] = {}
    for t in trials:
        by_scope.setdefault(t["scope"], []).append(t["step"])
    for scope, steps in by_scope.items():
        assert sorted(steps) == list(range(len(steps))), f"gap or repeat in {scope}"


def kill_9_after(proc: subprocess.Popen, db: Path, finished: int, timeout: float = 180) -> None:
    """SIGKILL the process group of a running `recur run` (started with start_new_session) once its trace holds
    ``finished`` finished trials: a crash in the middle of a run, for resume tests."""
    import signal
    import sqlite3
    import time

    deadline, done = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    done = conn.execute("SELECT count(*) FROM trials WHERE status!='running'").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is being created
                done = 0
            if done >= finished:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

