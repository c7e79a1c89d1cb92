"""Model-based proposals: a tree-structured Parzen estimator (TPE) over the run's own history.

The trials so far are split at the ``gamma`` quantile of the metric into good and bad. Each free parameter
gets two densities in unit coordinates: ``l`` over the good points and ``g`` over the rest (Gaussian kernels
of width ``bandwidth`` for numbers, smoothed counts for choices, both mixed with a uniform prior of weight
``prior``). ``candidates`` points are drawn, as local moves of the incumbent in one to three parameters when
``local`` is 1, else around good points with all free parameters moving together, and the one with the
highest density ratio ``l/g`` is proposed: where good results were dense and bad ones sparse.
Until ``min_obs`` ok trials exist the policy's own proposals pass through unchanged. The proposal leads (is
what the default selector tries) every ``lead_every``-th step.
"""
import math

from recur.core.mechanism_api import Mechanism, begin_model, changes, from_unit, lead, to_unit


def _log_density(value, centres, ax, bandwidth, prior):
    """log of a kernel density over ``centres`` mixed with a uniform prior (``prior`` pseudo-points)."""
    if ax[0] == "choice":
        hits = 0
        for c in centres:
            if c == value:
                hits += 1
        return math.log((hits + prior / len(ax[4])) / (len(centres) + prior))
    total = prior
    for c in centres:
        z = (value - c) / bandwidth
        total += math.exp(-0.5 * z * z) / (bandwidth * 2.5066282746310002)
    return math.log(total / (len(centres) + prior))


def _loss(observation):
    return observation[0]


class Tpe(Mechanism):
    """Propose the point with the best good/bad density ratio among samples around the good trials."""

    PARAMS = {"gamma": 0.25, "candidates": 24, "bandwidth": 0.12, "prior": 1.0, "min_obs": 6, "local": 1, "lead_every": 1}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent, obs = begin_model(context, int(p["min_obs"]))
        if obs is None:
            return proposals
        obs.sort(key=_loss)
        n_good = min(max(1, int(math.ceil(float(p["gamma"]) * len(obs)))), len(obs) - 1)
        names = sorted(axes)
        units = []
        for _loss_ignored, point, _record in obs:
            row = {}
            for name in names:
                value = point.get(name, incumbent.get(name))
                row[name] = value if axes[name][0] == "choice" else to_unit(value, axes[name])
            units.append(row)
        good, bad = units[:n_good], units[n_good:]
        bandwidth = max(float(p["bandwidth"]), 1e-3)
        prior = max(float(p["prior"]), 1e-6)
        best, best_score = None, None
        here = {}
        for name in names:
            value = incumbent.get(name)
            here[name] = value if axes[name][0] == "choice" else to_unit(value, axes[name])
        for _ in range(max(int(p["candidates"]), 1)):
            if int(p["local"]):  # a local move of the incumbent in 1-3 parameters, as level 1 makes them
                centre = here
                moving = rng.sample(names, min(len(names), rng.choice((1, 1, 2, 3))))
            else:  # anywhere near a good trial, every parameter at once
                centre = good[rng.randrange(len(good))]
                moving = names
            cand = {}
            score = 0.0
            for name in names:
                ax = axes[name]
                if name not in moving:
                    value = centre[name]
                elif ax[0] == "choice":
                    value = ax[4][rng.randrange(len(ax[4]))] if int(p["local"]) or rng.random() < 0.2 else centre[name]
                else:
                    value = min(max(centre[name] + rng.gauss(0.0, bandwidth), 0.0), 1.0)
                cand[name] = value
                score += _log_density(value, [g[name] for g in good], ax, bandwidth, prior)
                score -= _log_density(value, [b[name] for b in bad], ax, bandwidth, prior)
            if best_score is None or score > best_score:
                best, best_score = cand, score
        point = {}
        for name in names:
            if axes[name][0] != "choice":
                point[name] = from_unit(best[name], axes[name])
            elif best[name] in axes[name][4]:  # an unknown incumbent choice is left alone, never proposed
                point[name] = best[name]
        params = changes(point, incumbent)
        if not params:
            return proposals
        mine = [{"kind": "tpe", "payload": {"params": params},
                 "rationale": "TPE: best good/bad density ratio (log %.3g) among %d samples around the best %d of %d trials"
                 % (best_score, int(p["candidates"]), n_good, len(obs))}]
        return lead(mine, proposals, int(context.get("step") or 0), int(p["lead_every"]))
