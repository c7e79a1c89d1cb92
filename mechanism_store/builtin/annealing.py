"""Simulated-annealing acceptance (stochastic local search).

``accept`` keeps everything the default gate keeps, never keeps a failed trial (any status but "ok", or a
missing / non-finite metric), and keeps a *worse* result with probability ``exp(-delta / T)``:

* ``delta`` is how much worse the metric is than the incumbent (or the best when there is no incumbent
  metric), in units of the level's noise ``threshold`` when the outcome carries one, else of the spread
  of recent ok metrics in ``history`` (their standard deviation over the last ``window`` records), else
  of ``relative_scale`` * |reference|;
* ``T = t0 * decay ** step``; once ``T`` falls below ``t_min`` nothing worse is kept, and a result worse
  than ``max_delta`` spreads is never kept;
* a result the default gate refused that is not worse (an improvement within the noise) has ``delta`` = 0 and
  is kept while ``T >= t_min``, as in annealing proper.

Early in a run this lets the search walk through a worse point to escape a local optimum; late it reduces
to the default gate.
"""
import math

from recur.core.mechanism_api import Mechanism


def _finite(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class Annealing(Mechanism):
    """Keep some worse results early (probability exp(-delta/T), T decaying with step); never keep failures."""

    PARAMS = {
        "t0": 0.5,
        "decay": 0.93,
        "t_min": 0.001,
        "max_delta": 3.0,
        "window": 50,
        "relative_scale": 0.01,
    }

    def accept(self, outcome, history, rng):
        p = self.PARAMS
        metric = _finite(outcome.get("metric"))
        if outcome.get("status") != "ok" or metric is None:
            return False
        if outcome.get("default_keep") is True:
            return True
        reference = _finite(outcome.get("incumbent_metric"))
        if reference is None:
            reference = _finite(outcome.get("best_metric"))
        if reference is None:
            return False
        maximize = outcome.get("maximize") is True
        worse_by = reference - metric if maximize else metric - reference
        worse_by = max(worse_by, 0.0)
        step = outcome.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
            step = 0
        step = max(float(step), 0.0)
        temperature = float(p.get("t0", 0.5)) * float(p.get("decay", 0.93)) ** min(step, 1e6)
        if temperature < float(p.get("t_min", 0.001)):
            return False
        window = max(int(p.get("window", 50)), 1)
        recent = []
        for record in history[-window:]:
            if isinstance(record, dict) and record.get("status") == "ok":
                value = _finite(record.get("metric"))
                if value is not None:
                    recent.append(value)
        scale = _finite(outcome.get("threshold"))
        if scale is None or scale <= 0:
            scale = 0.0
        if scale <= 0 and len(recent) >= 3:
            mean = sum(recent) / len(recent)
            scale = math.sqrt(sum([(v - mean) * (v - mean) for v in recent]) / len(recent))
        if not (scale > 0 and math.isfinite(scale)):
            scale = abs(reference) * float(p.get("relative_scale", 0.01))
        if not (scale > 0 and math.isfinite(scale)):
            scale = 1.0
        delta = worse_by / scale
        if not math.isfinite(delta) or delta > float(p.get("max_delta", 3.0)):
            return False
        return rng.random() < math.exp(-delta / temperature)
