"""Successive halving over kinds: keep proposals of the better half of kinds by mean metric."""
import statistics

from recur.core.mechanism_api import Mechanism


class HalveKinds(Mechanism):
    """Drop proposals whose kind's mean ok metric is in the worse half (kinds with < 2 results always stay)."""

    PARAMS = {"min_results": 2}

    def filter(self, proposals, history):
        by_kind = {}
        for record in history:
            metric = record.get("metric")
            if record.get("status") == "ok" and isinstance(metric, (int, float)) and metric == metric:
                by_kind.setdefault(record.get("kind"), []).append(float(metric))
        means = {k: statistics.fmean(v) for k, v in by_kind.items() if len(v) >= self.PARAMS["min_results"]}
        if len(means) < 2:
            return list(proposals)
        cut = statistics.median(means.values())
        maximize = any(r.get("maximize") is True for r in history[-1:])
        kept = []
        for p in proposals:
            mean = means.get(p.get("kind"))
            if mean is None or (mean >= cut if maximize else mean <= cut):
                kept.append(p)
        return kept or list(proposals)
