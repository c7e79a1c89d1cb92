"""Step-size adaptation: a (1+1) evolution strategy with the one-fifth success rule (a trust region).

The policy's local moves have a fixed size: too large near an optimum, too small far from one. This family
keeps a step size ``sigma`` in unit coordinates, re-derived from the history every call: it starts at
``sigma0``, grows by ``grow`` after each of its own trials that was kept and shrinks by ``grow ** -0.25``
after each that was not (so it holds steady at a one-in-five success rate), clipped to
[``min_sigma``, ``max_sigma``]. It proposes the incumbent moved by a Gaussian step of that size in ``dims``
free numeric parameters (0 = all of them), each choice switched with probability ``switch``. The proposal
leads every ``lead_every``-th step.
"""
from recur.core.mechanism_api import Mechanism, begin, changes, from_unit, lead, to_unit


class TrustRegion(Mechanism):
    """Propose a Gaussian step around the incumbent whose size follows the one-fifth success rule."""

    PARAMS = {"sigma0": 0.15, "grow": 1.5, "min_sigma": 0.005, "max_sigma": 0.5, "dims": 0, "switch": 0.1,
              "lead_every": 1}

    def propose(self, context, rng):
        p = self.PARAMS
        proposals, axes, incumbent = begin(context)
        if incumbent is None or not axes:
            return proposals
        grow = max(float(p["grow"]), 1.0)
        low, high = float(p["min_sigma"]), max(float(p["max_sigma"]), float(p["min_sigma"]))
        sigma = min(max(float(p["sigma0"]), low), high)
        for record in context.get("history") or []:
            if isinstance(record, dict) and record.get("kind") == "trust_region":
                sigma = sigma * grow if record.get("kept") is True else sigma * grow ** -0.25
                sigma = min(max(sigma, low), high)
        numeric = [n for n in sorted(axes) if axes[n][0] != "choice"]
        dims = int(p["dims"])
        if 0 < dims < len(numeric):
            numeric = sorted(rng.sample(numeric, dims))
        point = {}
        for name in numeric:
            u = to_unit(incumbent.get(name), axes[name]) + rng.gauss(0.0, sigma)
            point[name] = from_unit(u, axes[name])
        for name in sorted(axes):
            if axes[name][0] == "choice" and rng.random() < float(p["switch"]):
                point[name] = axes[name][4][rng.randrange(len(axes[name][4]))]
        params = changes(point, incumbent)
        if not params:
            return proposals
        mine = [{"kind": "trust_region", "payload": {"params": params},
                 "rationale": "trust region: Gaussian step of size %.3g (one-fifth rule) in %d parameters"
                 % (sigma, len(params))}]
        return lead(mine, proposals, int(context.get("step") or 0), int(p["lead_every"]))
