"""The synthetic task adapter: milliseconds per trial, for loop tests and many-seed meta-evaluation."""
from __future__ import annotations

import hashlib
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from recur.core.executor import tail
from recur.core.records import CRASH, NAN, OK, TIMEOUT, Outcome
from recur.core.task import Task, TrialSpec

HERE = Path(__file__).parent
FILES = ("config.py", "surface.py", "evaluate.py")
PINNED = ("surface.py", "evaluate.py")
_METRIC = re.compile(r"^metric:\s*(\S+)\s*$", re.M)


class SyntheticTask(Task):
    name = "synthetic"
    metric_name = "metric"
    editable = "config.py"
    presets = ("default",)
    # A, D and E x 10 repeats x 6 instances at 100 trials take 14-18 min on 2 cores with empty caches (seeds 0, 100)
    # (bench/RESULTS.md); at 50 trials level 2 has barely started racing when the run ends
    ablation_trials = 100
    # single instances differ by whether a run finds the global basin: level 2's gain is about 0.38 sd of one
    # instance's difference, so ten repeats need about six instances each to show it (docs/design-notes.md)
    ablation_instances = 6
    ablation_parallel = True

    def populate(self, folder: Path) -> None:
        for name in FILES:
            shutil.copyfile(HERE / name, folder / name)

    def space(self) -> dict[str, dict[str, Any]]:
        sys.path.insert(0, str(HERE))
        try:
            from recur.tasks.synthetic.surface import SPACE
        finally:
            sys.path.remove(str(HERE))
        return {k: dict(v) for k, v in SPACE.items()}

    def pins(self, folder: Path) -> dict[str, str]:
        return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in PINNED}

    def trial_spec(self, folder: Path, seed: int, trial_seconds: float | None) -> TrialSpec:
        env = {"RECUR_SEED": str(seed), "RECUR_SYNTH_INSTANCE": str(self.options.get("instance", 0))}
        return TrialSpec(argv=[sys.executable, "-S", "evaluate.py"], cwd=folder, env=env, deadline_s=trial_seconds or 30.0)

    def parse(self, log_text: str, returncode: int | None, timed_out: bool) -> Outcome:
        if timed_out:
            return Outcome(TIMEOUT, info={"log_tail": tail(log_text)})
        found = _METRIC.findall(log_text)
        value = None
        if found:
            try:
                value = float(found[-1])
            except ValueError:
                value = None
        if value is not None and not math.isfinite(value):
            return Outcome(NAN, info={"log_tail": tail(log_text)})
        if returncode != 0 or value is None:
            return Outcome(CRASH, info={"log_tail": tail(log_text)})
        return Outcome(OK, metric=value)

    def screen_instances(self, count: int, seed: int) -> list[tuple[Any, dict[str, Any]]]:
        """Fresh surface instances (numbered from 10**6 on, never a run's own, which is its seed) from the
        default config."""
        from recur.core.edits import read_constants
        from recur.core.loop import derive_seed
        from recur.tasks.synthetic.surface import Surface

        start = read_constants((HERE / self.editable).read_text())
        start = {k: v for k, v in start.items() if k in self.space()}
        return [(Surface(10 ** 6 + derive_seed(seed, "instance", i) % 10 ** 6), start) for i in range(count)]

    def describe(self) -> str:
        return ("Synthetic task: config.py holds training hyperparameters; a hidden response surface with "
                "ridges, interactions, several local optima, seeded noise and a divergence region scores them. "
                "Lower metric is better.")
