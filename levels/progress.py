"""Live progress: one line per level-1 trial, and a bar per level with trial count, best metric and time."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

from recur.core.records import Trial


class Progress:
    def __init__(self, console: Console):
        self.console = console
        self.bars = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[best]}"), TimeElapsedColumn(), console=console,
                                 transient=False, disable=not console.is_terminal)
        self.tasks: dict[int, Any] = {}
        self.best: dict[int, float] = {}
        self.maximize = False
        self.metric = "metric"

    def __enter__(self) -> "Progress":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def begin(self, run_id: str, opts: Any, plan: str) -> None:
        self.console.print(f"recur run {run_id}: task {opts.task} ({opts.preset or 'default preset'}), "
                           f"{opts.levels} level(s), model {opts.model}")
        self.console.print(f"plan: {plan}", highlight=False)
        self.top = opts.levels
        self.tasks[1] = self.bars.add_task("level 1", total=opts.max_trials, best="")

    def on_trial(self, trial: Trial, replayed: bool) -> None:
        c, o, d = trial.candidate, trial.outcome, trial.decision
        level = c.level
        if level not in self.tasks:
            self.tasks[level] = self.bars.add_task(f"level {level}", total=None, best="")
        if o.ok and o.metric is not None and (level > 1 or not c.payload.get("baseline")):
            prev = self.best.get(level)
            better = prev is None or (o.metric > prev if (self.maximize or level > 1) else o.metric < prev)
            if better and (level > 1 or d.keep):
                self.best[level] = o.metric
        best = self.best.get(level)
        step = int(o.cost.get("trials", 1)) if level == 1 else 1  # a reused trial costs nothing
        self.bars.update(self.tasks[level], advance=step, best="" if best is None else f"best {best:.4f}")
        metric = "-" if o.metric is None else f"{o.metric:.4f}"
        tag = "replayed " if replayed else ("reused " if o.info.get("memo_of") else "")
        what = "baseline" if c.payload.get("baseline") else c.kind
        verdict = "keep" if d.keep else (o.status if not o.ok else ("ok" if c.payload.get("baseline") else "discard"))
        indent = "  " * (self.top - level) if hasattr(self, "top") else ""
        if level > 1:
            what = "incumbent window" if c.payload.get("incumbent") else f"{c.payload.get('mechanism', c.kind)}"
            verdict = ("promote" if d.keep else o.status if o.status != "ok" else
                       "-" if c.payload.get("incumbent") else "reject")
        self.console.print(f"{indent}{tag}L{level} {c.id.rsplit('/', 1)[-1]:>2} {what[:40]:<40} {metric:>9} {verdict:<8} "
                           f"{o.cost.get('seconds', 0):4.1f}s", highlight=False)
