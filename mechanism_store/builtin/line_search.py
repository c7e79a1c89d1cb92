"""Coordinate line search on the most sensitive parameter (a pattern search with per-parameter steps).

Each free numeric parameter has a step in unit coordinates, re-derived from the history every call: it starts
at ``step0``, grows by ``expand`` after a kept move along it, and shrinks by ``shrink`` once moves in both
directions at the current step were not kept. The parameter worked on is the one whose value correlates most
with the metric over the run's trials, weighted by its remaining step (parameters whose step fell below
``min_step`` are done); the move goes against the correlation first, then the other way. The proposal changes
that one parameter of the incumbent and leads every ``lead_every``-th step.
"""
import math

from recur.core.mechanism_api import Mechanism, begin, from_unit, lead, observations, to_unit


def _correlation(xs, ys):
    n = len(xs)
    if n < 3:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for x, y in zip(xs, ys):
        sxy += (x - mx) * (y - my)
        sxx += (x - mx) ** 2
        syy += (y - my) ** 2
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


class LineSearch(Mechanism):
    """Move the most sensitive parameter along its line, with a step that adapts to success."""

    PARAMS = {"step0": 0.2, "expand": 1.5, "shrink": 0.5, "min_step": 0.01, "lead_every": 1}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent = begin(context)
        if incumbent is None:
            return proposals
        numeric = [n for n in sorted(axes) if axes[n][0] != "choice"]
        steps = {}
        failed = {}
        for name in numeric:
            steps[name] = float(p["step0"])
            failed[name] = []
        history = context.get("history") or []
        for record in history:
            payload = record.get("payload") if isinstance(record, dict) else None
            if record.get("kind") != "line_search" or not isinstance(payload, dict):
                continue
            name = payload.get("line")
            if name not in steps:
                continue
            if record.get("kept") is True:
                steps[name] = min(steps[name] * float(p["expand"]), 0.5)
                failed[name] = []
            else:
                failed[name] = failed[name] + [payload.get("direction")]
                if 1 in failed[name] and -1 in failed[name]:
                    steps[name] = steps[name] * float(p["shrink"])
                    failed[name] = []
        obs = observations(history, incumbent, axes, bool(context.get("maximize")))
        losses = [o[0] for o in obs]
        ranked = []
        for name in numeric:
            if steps[name] < float(p["min_step"]):
                continue
            corr = _correlation([to_unit(o[1].get(name), axes[name]) for o in obs], losses)
            ranked.append([-abs(corr) * steps[name] - 1e-9 * steps[name], name, corr])
        ranked.sort()
        for _score, name, corr in ranked:
            first = -1 if corr > 0 else 1
            for direction in (first, -first):
                if direction in failed[name]:
                    continue
                u = to_unit(incumbent.get(name), axes[name]) + direction * steps[name]
                value = from_unit(u, axes[name])
                if value == incumbent.get(name):
                    continue
                mine = [{"kind": "line_search",
                         "payload": {"params": {name: value}, "line": name, "direction": direction},
                         "rationale": "line search on %s (correlation with the metric %.2f), step %.3g %s"
                         % (name, corr, steps[name], "up" if direction > 0 else "down")}]
                return lead(mine, proposals, int(context.get("step") or 0), int(p["lead_every"]))
        return proposals
