"""What every level of one run shares: ids, trace, task, task repo, worker pool, budget and settings."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recur.core.budget import Budget
from recur.core.executor import WorkerPool
from recur.core.task import Task
from recur.core.trace import TraceStore
from recur.levels.gitrepo import TaskRepo


@dataclass
class Runtime:
    run_id: str
    seed: int
    trace: TraceStore
    task: Task
    repo: TaskRepo
    pool: WorkerPool
    budget: Budget
    run_dir: Path
    pins: dict[str, str]
    trial_seconds: float | None = None
    min_delta: float = 0.0
    threshold: float = 0.0  # keep threshold max(2 sigma, min_delta), set by the baseline window
    backend_factory: Callable[[int], Any] | None = None  # level -> ProposalBackend
    invoker_factory: Callable[[list], Any] | None = None  # mechanisms -> Invoker (the sandbox)
    settings: dict[str, Any] = field(default_factory=dict)
    on_trial: Callable[..., None] | None = None

    @property
    def main_branch(self) -> str:
        return f"recur/{self.run_id}"

    def window_branch(self, scope: str) -> str:
        return "recur-window/" + scope.replace("/", "-")

    def scratch(self, trial_id: str) -> Path:
        folder = self.run_dir / "trials" / trial_id.replace("/", "-")
        if folder.exists():
            shutil.rmtree(folder)
        return folder

    def log_path(self, trial_id: str) -> Path:
        return self.run_dir / "logs" / (trial_id.replace("/", "-") + ".log")
