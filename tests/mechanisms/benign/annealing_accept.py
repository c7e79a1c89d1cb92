"""Simulated-annealing acceptance: sometimes keep a slightly worse result early in the run."""
import math

from recur.core.mechanism_api import Mechanism


class AnnealAccept(Mechanism):
    """Keep a worse ok result with probability exp(-delta / T), T = t0 * decay ** step."""

    PARAMS = {"t0": 0.05, "decay": 0.9}

    def accept(self, outcome, history, rng):
        if outcome.get("default_keep") is True:
            return True
        metric = outcome.get("metric")
        best = outcome.get("best_metric")
        if outcome.get("status") != "ok" or not isinstance(metric, (int, float)) or not isinstance(best, (int, float)):
            return False
        if not (math.isfinite(metric) and math.isfinite(best)):
            return False
        delta = (best - metric) if outcome.get("maximize") else (metric - best)
        step = outcome.get("step") if isinstance(outcome.get("step"), int) else 0
        temperature = self.PARAMS["t0"] * self.PARAMS["decay"] ** max(step, 0)
        if temperature <= 1e-12:
            return False
        return rng.random() < math.exp(-max(delta, 0.0) / temperature)
