"""Crossover of the best kept records: mix parameters of two elites into a new proposal."""
import heapq

from recur.core.mechanism_api import Mechanism


class EliteCrossover(Mechanism):
    """Take the ``k`` best ok records and propose one uniform crossover of two of them."""

    PARAMS = {"k": 4}

    def propose(self, context, rng):
        proposals = list(context.get("proposals") or [])
        maximize = context.get("maximize") is True
        scored = []
        for i, record in enumerate(context.get("history") or []):
            metric = record.get("metric")
            if record.get("status") == "ok" and isinstance(metric, (int, float)) and metric == metric:
                scored.append((-metric if maximize else metric, i, record))
        elites = [r for _, _, r in heapq.nsmallest(int(self.PARAMS["k"]), scored)]
        if len(elites) < 2:
            return proposals
        a, b = rng.sample(elites, 2)
        pa = (a.get("payload") or {}).get("params") or {}
        pb = (b.get("payload") or {}).get("params") or {}
        child = {}
        for name in sorted(set(pa) | set(pb)):
            if name in pa and name in pb:
                child[name] = pa[name] if rng.random() < 0.5 else pb[name]
            else:
                child[name] = pa.get(name, pb.get(name))
        if child:
            proposals.append({"kind": ",".join(sorted(child)), "payload": {"params": child}, "rationale": "crossover"})
        return proposals
