"""Elite archive and crossover (evolutionary search; GEAR-style best + diverse elites).

Points. A record's ``payload.params`` is an edit of the incumbent of its time (at level 1 a few constants; at
a level whose proposals are whole specs, the whole point). Its full point is rebuilt from ``history``: its own
edits, else the latest kept edit before it, else the current incumbent's value.

The archive is rebuilt on every call: among ok trials with a finite metric (one entry per distinct point, its
best metric), the ``elites`` best, plus ``diverse`` more picked greedily from the better ``pool_fraction`` of
the rest as the points farthest (maximin, in the space's normalised coordinates) from the archive so far.

``propose`` adds ``children`` proposals, each a uniform crossover of two archive points (one of them a best
elite): every free parameter is taken from either parent with equal chance. Then each numeric parameter is
mutated with probability ``mutation_rate`` by a Gaussian step of ``sigma`` of its normalised range
(log-scaled where the space says ``log``), each choice switched with probability ``mutation_rate`` / 2; a
child equal to a parent, or to the incumbent, is always mutated once. A child's ``params`` are the values that
differ from the incumbent (only parameters of the space, clipped into range; frozen ones never change).
``kind`` is those names sorted and joined by ",", except when both parents share a kind that is not such a
name list (a family name, say): then that kind. The children go first every ``lead_every``-th trial (so the
default selector tries them; 0 = never) and after the policy's own proposals otherwise (for a selector).
"""
import json
import math

from recur.core.mechanism_api import Mechanism, axis, from_unit, is_number, known_unit, observations, record_params


def _valid(value, axis):
    """``value`` made valid for the axis (clipped into range, rounded for ints), or None if it cannot be."""
    if axis[0] == "choice":
        if known_unit(value, axis) is None:
            return None
        return value
    if not is_number(value):
        return None
    value = min(max(float(value), axis[1]), axis[2])
    if axis[0] == "int":
        return int(round(value))
    return value


def _canon(value):
    return json.dumps(value, sort_keys=True, default=str)


def _distance(a, b, axes):
    total = 0.0
    names = {}
    for name in a:
        names[name] = True
    for name in b:
        names[name] = True
    for name in names:
        if name not in a or name not in b:
            total += 0.25
            continue
        axis = axes.get(name)
        ua = None
        ub = None
        if axis is not None:
            ua = known_unit(a[name], axis)
            ub = known_unit(b[name], axis)
        if ua is None or ub is None:
            if _canon(a[name]) != _canon(b[name]):
                total += 1.0
            continue
        total += (ua - ub) ** 2
    return math.sqrt(total)


def _points(history, incumbent, axes, maximize):
    """[score, record, full point] for every ok trial that edited something (``observations``' points, each
    value checked against its axis; higher score better)."""
    out = []
    for loss, point, record in observations(history, incumbent, axes, maximize):
        if not record_params(record):
            continue
        valid = {}
        for name in sorted(point):
            value = _valid(point[name], axes[name])
            if value is not None:
                valid[name] = value
        if valid:
            out.append([-loss, record, valid])
    return out


def _archive(points, n_best, n_diverse, pool_fraction, axes):
    """The best ``n_best`` distinct points, then ``n_diverse`` maximin-far ones from the better rest."""
    best = {}
    order = []
    for entry in points:
        key = _canon(entry[2])
        if key not in best:
            order.append(key)
            best[key] = entry
        elif entry[0] > best[key][0]:
            best[key] = entry
    ranked = []
    for i in range(len(order)):
        entry = best[order[i]]
        ranked.append([-entry[0], i, entry])
    ranked.sort()
    elites = [item[2] for item in ranked[:n_best]]
    rest = [item[2] for item in ranked[n_best:]]
    rest = rest[: max(int(math.ceil(len(rest) * pool_fraction)), 0)]
    for _ in range(n_diverse):
        if not rest or not elites:
            break
        far_index = 0
        far_value = -1.0
        for i in range(len(rest)):
            nearest = min([_distance(rest[i][2], e[2], axes) for e in elites])
            if nearest > far_value:
                far_value = nearest
                far_index = i
        elites.append(rest.pop(far_index))
    return elites


def _mutate(params, name, axis, sigma, rng):
    if axis[0] == "choice":
        choices = axis[4]
        params[name] = choices[rng.randrange(len(choices))]
        return
    u = known_unit(params[name], axis)
    if u is None:
        u = rng.random()
    params[name] = from_unit(u + rng.gauss(0.0, sigma), axis)


def _edits(point, incumbent):
    """The part of ``point`` that differs from the incumbent: what a proposal's params are."""
    out = {}
    for name in sorted(point):
        if name not in incumbent or _canon(point[name]) != _canon(incumbent[name]):
            out[name] = point[name]
    return out


def _same_point(child, parent, frozen):
    for name in child:
        if name not in frozen and (name not in parent or _canon(child[name]) != _canon(parent[name])):
            return False
    return True


def _label(record):
    rid = record.get("id")
    if not isinstance(rid, str):
        rid = _canon(rid)
    return "%s (metric %.6g)" % (rid[:40], float(record.get("metric")))


class EliteCrossover(Mechanism):
    """Append crossover children of two archive elites (best + diverse), with a small mutation."""

    PARAMS = {
        "elites": 3,
        "diverse": 2,
        "pool_fraction": 0.5,
        "children": 2,
        "mutation_rate": 0.3,
        "sigma": 0.1,
        "lead_every": 2,
    }

    def propose(self, context, rng):
        p = self.PARAMS
        proposals = list(context.get("proposals") or [])
        history = context.get("history") or []
        space = context.get("space")
        if not isinstance(space, dict):
            space = {}
        frozen = {}
        for name in context.get("frozen") or []:
            frozen[str(name)] = True
        axes = {}  # frozen parameters included: crossover recombines whole points
        for name in space:
            found = axis(space[name])
            if found is not None and isinstance(name, str):
                axes[name] = found
        incumbent = context.get("incumbent")
        if not isinstance(incumbent, dict):
            incumbent = {}
        n_best = max(int(p.get("elites", 3)), 1)
        archive = _archive(
            _points(history, incumbent, axes, context.get("maximize") is True),
            n_best,
            max(int(p.get("diverse", 2)), 0),
            min(max(float(p.get("pool_fraction", 0.5)), 0.0), 1.0),
            axes,
        )
        if len(archive) < 2:
            return proposals
        rate = min(max(float(p.get("mutation_rate", 0.3)), 0.0), 1.0)
        sigma = max(float(p.get("sigma", 0.1)), 0.0)
        added = []
        for _ in range(max(int(p.get("children", 2)), 0)):
            first = rng.randrange(min(n_best, len(archive)))
            second = rng.randrange(len(archive) - 1)
            if second >= first:
                second += 1
            a = archive[first]
            b = archive[second]
            pa = a[2]
            pb = b[2]
            free = [n for n in sorted(axes) if n not in frozen and (n in pa or n in pb)]
            child = {}
            for name in free:
                if name in pa and name in pb:
                    child[name] = pa[name] if rng.random() < 0.5 else pb[name]
                else:
                    child[name] = pa[name] if name in pa else pb[name]
            if not child:
                continue
            mutated = False
            for name in free:
                chance = rate / 2 if axes[name][0] == "choice" else rate
                if rng.random() < chance:
                    _mutate(child, name, axes[name], sigma, rng)
                    mutated = True
            edits = _edits(child, incumbent)
            if not edits or _same_point(child, pa, frozen) or _same_point(child, pb, frozen):
                name = rng.choice(free)
                _mutate(child, name, axes[name], max(sigma, 0.05), rng)
                mutated = True
                edits = _edits(child, incumbent)
            if not edits:
                continue
            kind = ",".join(sorted(edits))
            parent_kind = a[1].get("kind")
            if isinstance(parent_kind, str) and parent_kind == b[1].get("kind"):
                if parent_kind != ",".join(sorted([str(k) for k in record_params(a[1])])):
                    kind = parent_kind
            rationale = "crossover of elites %s and %s" % (_label(a[1]), _label(b[1]))
            if mutated:
                rationale += " with mutation"
            added.append({"kind": kind, "payload": {"params": edits}, "rationale": rationale})
        lead = max(int(p.get("lead_every", 2)), 0)
        if lead > 0 and len(history) % lead == 0:
            return added + proposals
        return proposals + added
