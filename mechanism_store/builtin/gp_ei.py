"""Bayesian optimisation in a trust region: a Gaussian process over the run's own trials, expected improvement.

The ``max_points`` trials nearest the incumbent (unit coordinates; a differing choice counts as distance 1)
are fitted by a Gaussian process (``gp_fit``: squared-exponential kernel of width ``lengthscale``, noise
variance ``noise`` relative to the signal's). ``candidates`` points are drawn as moves of the incumbent in one
to ``dims`` parameters (numbers by a Gaussian step of ``step``, choices to another value), and the one with
the highest expected improvement over the best observed trial is proposed: where the model is confident of a
gain, or unsure near good results. Until ``min_obs`` ok trials exist the policy's own proposals pass through.
The proposal leads (is what the default selector tries) every ``lead_every``-th step.
"""
from recur.core.mechanism_api import (Mechanism, begin_model, changes, expected_improvement, from_unit, gp_fit,
                                      gp_predict, lead, to_unit)


def _distance(a, b):
    total = 0.0
    for x, y in zip(a, b):
        total += (x - y) * (x - y)
    return total


class GpEi(Mechanism):
    """Propose the local move of the incumbent with the highest expected improvement under a GP of the trials."""

    PARAMS = {"lengthscale": 0.25, "noise": 0.05, "candidates": 48, "max_points": 40, "step": 0.15, "dims": 3,
              "min_obs": 6, "lead_every": 1}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent, obs = begin_model(context, int(p["min_obs"]))
        if obs is None:
            return proposals
        names = sorted(axes)
        categorical = [axes[n][0] == "choice" for n in names]
        here = [to_unit(incumbent.get(n), axes[n]) for n in names]
        rows = []
        best_loss = None
        for loss, point, _record in obs:
            unit = [to_unit(point.get(n, incumbent.get(n)), axes[n]) for n in names]
            rows.append([_distance(unit, here), unit, loss])
            best_loss = loss if best_loss is None else min(best_loss, loss)
        rows.sort()  # nearest the incumbent first
        rows = rows[:max(int(p["max_points"]), 2)]
        model = gp_fit([r[1] for r in rows], [r[2] for r in rows], categorical, float(p["lengthscale"]), float(p["noise"]))
        step = max(float(p["step"]), 1e-3)
        best, best_ei = None, None
        for _ in range(max(int(p["candidates"]), 1)):
            cand = list(here)
            moving = rng.sample(range(len(names)), min(len(names), rng.randint(1, max(int(p["dims"]), 1))))
            for i in moving:
                ax = axes[names[i]]
                if ax[0] == "choice":
                    cand[i] = to_unit(ax[4][rng.randrange(len(ax[4]))], ax)
                else:
                    cand[i] = min(max(cand[i] + rng.gauss(0.0, step), 0.0), 1.0)
            mean, sd = gp_predict(model, cand)
            ei = expected_improvement(mean, sd, best_loss)
            if best_ei is None or ei > best_ei:
                best, best_ei = cand, ei
        point = {n: from_unit(u, axes[n]) for n, u in zip(names, best)}
        params = changes({n: v for n, v in point.items() if axes[n][0] != "choice" or v in axes[n][4]}, incumbent)
        if not params:
            return proposals
        mine = [{"kind": "gp_ei", "payload": {"params": params},
                 "rationale": "GP-EI: highest expected improvement (%.3g) among %d local moves, model of %d trials"
                 % (best_ei, int(p["candidates"]), len(rows))}]
        return lead(mine, proposals, int(context.get("step") or 0), int(p["lead_every"]))
