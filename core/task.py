"""The Task interface: what level 1 optimises. Tasks plug in through the ``recur.tasks`` entry point group.

A task owns a small folder of files (one of them editable), a declared parameter space over that file's
top-level constants, a way to build the command for one trial, and a parser for the trial's log.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from recur.core.records import Outcome


class TaskError(Exception):
    """A task could not be set up (missing data, bad --data folder, unknown preset). Shown as one clear line."""


@dataclass
class TrialSpec:
    """How to run one trial: argv in cwd with env, killed at ``deadline_s`` wall-clock seconds."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    deadline_s: float = 120.0
    memory_bytes: int | None = None  # RLIMIT_AS; None leaves it unlimited (torch maps a lot of virtual memory)
    cpu_seconds: int | None = None  # RLIMIT_CPU


class Task(abc.ABC):
    """One optimisation target for level 1. Subclasses are constructed with ``(preset, options)``."""

    name: str = "task"
    metric_name: str = "metric"
    maximize: bool = False
    editable: str = "train.py"  # the one file level 1 edits
    presets: tuple[str, ...] = ("default",)
    ablation_trials: int | None = None  # level-1 trials per run `recur ablate` defaults to (None: the plan's)
    ablation_parallel: bool = False  # runs are light CPU processes: `recur ablate` runs one per core by default
    ablation_instances: int = 1  # runs `recur ablate` averages per repeat by default (each its own seed)

    def __init__(self, preset: str | None = None, options: dict[str, Any] | None = None):
        preset = preset or self.presets[0]
        if preset not in self.presets:
            raise TaskError(f"task {self.name!r} has no preset {preset!r}; choose one of: {', '.join(self.presets)}")
        self.preset = preset
        self.options = dict(options or {})

    @abc.abstractmethod
    def populate(self, folder: Path) -> None:
        """Write the task's files (editable and pinned) into ``folder``, the run's git worktree."""

    @abc.abstractmethod
    def space(self) -> dict[str, dict[str, Any]]:
        """Editable parameters: ``{NAME: {"type": "float"|"int"|"choice"|"bool", "low", "high", "log", "choices"}}``."""

    def prepare(self, folder: Path, cache_dir: Path) -> None:
        """Build or locate data before the first trial (cached by content hash). Default: nothing to do."""

    def pins(self, folder: Path) -> dict[str, str]:
        """Hashes of the pinned evaluator's inputs; a change between run start and a trial voids the trial."""
        return {}

    @abc.abstractmethod
    def trial_spec(self, folder: Path, seed: int, trial_seconds: float | None) -> TrialSpec:
        """The command that runs one trial of the files in ``folder``."""

    @abc.abstractmethod
    def parse(self, log_text: str, returncode: int | None, timed_out: bool) -> Outcome:
        """Turn the trial's log into an Outcome. Never raises: crash/NaN/timeout become statuses."""

    def screen_instances(self, count: int, seed: int) -> list[tuple[Callable[[dict[str, Any], int], float | None], dict[str, Any]]]:
        """``count`` cheap stand-ins of this task an outer level may screen mechanisms on, as (trial function of
        the full parameter point and seed, start point) pairs; never the instance a run optimises. Default: none
        (a real training task has no cheap copy; screening then uses a surrogate of the run's own trace)."""
        return []

    def describe(self) -> str:
        """A paragraph for the level-1 prompt: what the task is and what the metric means."""
        return f"Task {self.name}: minimise {self.metric_name}." if not self.maximize else f"Task {self.name}: maximise {self.metric_name}."


def available_tasks() -> dict[str, Any]:
    """Installed tasks by name (entry point group ``recur.tasks``), not yet imported."""
    return {ep.name: ep for ep in entry_points(group="recur.tasks")}


def load_task(name: str, preset: str | None = None, options: dict[str, Any] | None = None) -> Task:
    """Instantiate a task by entry-point name, with a clear error for unknown names."""
    tasks = available_tasks()
    if name not in tasks:
        raise TaskError(f"unknown task {name!r}; installed tasks: {', '.join(sorted(tasks)) or 'none'}")
    return tasks[name].load()(preset, options)
