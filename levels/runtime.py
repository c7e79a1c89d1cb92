"""What every level of one run shares: ids, trace, task, task repo, worker pool, budget and settings."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recur.core.budget import Budget
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
    pool: Any  # core.executor.WorkerPool, or core.ray_pool.RayPool with --executor ray
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
    store: Any = None  # MechanismStore, opened for every run so level-1 runs use promoted mechanisms too
    source_cache: dict[str, str] = field(default_factory=dict)
    trial_cache: dict[str, Any] = field(default_factory=dict)  # trial id -> Trial, for lineage histories
    gate_cache: dict[str, Any] = field(default_factory=dict)  # sha256 of a source -> its GateReport

    def gate(self, source: str) -> Any:
        """The gate's report for ``source``: a function of the source (mechanism_store/gate.py ``cached_gate``),
        kept in memory for the run and on disk for the machine; the arms of an outer race and every run of an
        ablation propose the same modules again."""
        from recur.core.workspace import default_cache_dir
        from recur.mechanism_store.gate import cached_gate

        key = hashlib.sha256(source.encode()).hexdigest()
        if key not in self.gate_cache:
            self.gate_cache[key] = cached_gate(source, default_cache_dir())
        return self.gate_cache[key]

    def remember(self, trials: list) -> None:
        for t in trials:
            self.trial_cache[t.candidate.id] = t

    def trials_of(self, ids) -> list:
        """The finished trials named by a lineage's trail, in order (from memory, else from the trace)."""
        out = []
        for tid in ids:
            if tid not in self.trial_cache:
                row = self.trace.trial_row(tid)
                if row is None or not row.finished:
                    continue
                self.trial_cache[tid] = row.trial()
            out.append(self.trial_cache[tid])
        return out

    def store_active(self, level: int) -> list:
        """The mechanisms active at ``level`` on the store's main, named by their branch (``slug-hash``)."""
        from recur.core.hooks import ActiveMechanism
        from recur.mechanism_store.gate import defined_hooks

        if self.store is None:
            return []
        promoted = {m.slug: m for m in self.store.list(level=level) if m.status in ("promoted", "applied")}
        out = []
        for slug, source in self.store.active(level):
            name = promoted[slug].name if slug in promoted else slug
            self.source_cache[name] = source
            out.append(ActiveMechanism(name, source, defined_hooks(source)))
        return out

    def mechanism_source(self, name: str) -> str:
        if name not in self.source_cache:
            self.source_cache[name] = self.store.source(name)
        return self.source_cache[name]

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
