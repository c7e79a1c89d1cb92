"""Restart on stagnation (random restarts / iterated local search).

``propose`` counts the trailing run of history records that were not kept. When it reaches ``patience``
(and again every ``cooldown`` records while the stagnation lasts) the policy's proposals are replaced by
``n`` restart points far from the incumbent: every non-frozen parameter of ``context["space"]`` (at most
``dims`` of them, 0 = all) is moved at least ``min_distance`` of its normalised range (log-scaled where the
space says ``log``) away from the incumbent's value, and choices/bools take a different value. Of
``pool`` random far candidates the ones farthest (maximin) from the points tried in the last ``memory``
records are chosen, so restarts land in unexplored regions. Outside a stagnation it returns the policy's
proposals unchanged.

``accept`` makes the restart a real one: on a restart trial (the same history test, so it knows without
seeing the candidate) an ok result is kept even if it is worse, which moves the incumbent to the new region
where the search continues (the level still remembers its best). Everything the default gate keeps stays
kept; failures never are. ``keep_restart`` = 0 leaves acceptance to the default gate. Memory is derived from
``history`` only; with parallel workers the history ``accept`` sees can differ from the one ``propose`` saw,
in which case a restart may go unkept or an ordinary trial be kept once.
"""
import math

from recur.core.mechanism_api import Mechanism, begin, from_unit, known_unit, record_params


def _far_unit(centre, min_distance, rng):
    """A uniform draw from the part of [0, 1] at least ``min_distance`` from ``centre`` (the far end if none)."""
    left = max(centre - min_distance, 0.0)
    right = max(1.0 - (centre + min_distance), 0.0)
    if left + right <= 0:
        if centre >= 0.5:
            return 0.0
        return 1.0
    x = rng.random() * (left + right)
    if x < left:
        return x
    return centre + min_distance + (x - left)


def _stagnation(history):
    run = 0
    for record in reversed(history):
        if isinstance(record, dict) and record.get("kept") is True:
            break
        run += 1
    return run


def _fires(history, params):
    """Whether this trial is a restart: ``patience`` records without a kept one, then every ``cooldown``."""
    patience = max(int(params.get("patience", 8)), 1)
    cooldown = max(int(params.get("cooldown", 4)), 1)
    run = _stagnation(history)
    return run >= patience and (run - patience) % cooldown == 0


class Restart(Mechanism):
    """After ``patience`` records without a kept improvement, jump far away: propose restart points, keep the result."""

    PARAMS = {
        "patience": 8,
        "cooldown": 4,
        "n": 1,
        "min_distance": 0.3,
        "dims": 0,
        "pool": 16,
        "memory": 50,
        "keep_restart": 1,
    }

    def propose(self, context, rng):
        p = self.PARAMS
        proposals = list(context.get("proposals") or [])
        history = context.get("history") or []
        if not _fires(history, p):
            return proposals
        patience = max(int(p.get("patience", 8)), 1)
        run = _stagnation(history)
        _, axes, incumbent = begin(context)  # no usable space: no axes, proposals unchanged below
        incumbent = incumbent or {}
        names = sorted(axes)
        if not names:
            return proposals
        dims = int(p.get("dims", 0))
        if 0 < dims < len(names):
            names = sorted(rng.sample(names, dims))
        min_distance = min(max(float(p.get("min_distance", 0.3)), 0.0), 1.0)
        memory = max(int(p.get("memory", 50)), 0)
        tried = []
        if memory > 0:
            for record in history[-memory:]:
                params = record_params(record)
                point = {}
                for name in names:
                    if name in params:
                        u = known_unit(params[name], axes[name])
                        if u is not None:
                            point[name] = u
                if point:
                    tried.append(point)
        pool = []
        for _ in range(max(int(p.get("pool", 16)), 1)):
            params = {}
            units = {}
            for name in names:
                axis = axes[name]
                centre = known_unit(incumbent.get(name), axis)
                if axis[0] == "choice":
                    choices = axis[4]
                    others = [i for i in range(len(choices)) if centre is None or abs((i + 0.5) / len(choices) - centre) > 1e-9]
                    if not others:
                        others = [0]
                    index = rng.choice(others)
                    units[name] = (index + 0.5) / len(choices)
                    params[name] = choices[index]
                    continue
                if centre is None:
                    centre = 0.5
                u = _far_unit(centre, min_distance, rng)
                params[name] = from_unit(u, axis)
                units[name] = u
            nearest = 1e9
            for point in tried:
                total = 0.0
                for name in point:
                    total += (point[name] - units[name]) ** 2
                nearest = min(nearest, math.sqrt(total))
            pool.append([-nearest, len(pool), params])
        pool.sort()
        n = max(int(p.get("n", 1)), 1)
        kind = ",".join(names)
        restarts = []
        for item in pool[:n]:
            restarts.append(
                {
                    "kind": kind,
                    "payload": {"params": item[2]},
                    "rationale": "restart: %d trials without a kept improvement (patience %d); jump at least %.2g of each range away from the incumbent, into the least explored region"
                    % (run, patience, min_distance),
                }
            )
        return restarts

    def accept(self, outcome, history, rng):
        if outcome.get("default_keep") is True:
            return True
        if not int(self.PARAMS.get("keep_restart", 1)):
            return False
        metric = outcome.get("metric")
        if outcome.get("status") != "ok" or isinstance(metric, bool) or not isinstance(metric, (int, float)):
            return False
        if not math.isfinite(metric):
            return False
        return _fires(history, self.PARAMS)
