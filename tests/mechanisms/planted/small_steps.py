"""A planted helpful mechanism for the synthetic task: small single-parameter numeric steps.

The scripted baseline changes 1-3 parameters at once with wide moves and flips categorical choices, which
mostly lands outside the basin it is in. Proposing one small step of one numeric parameter (a local pattern
search) improves the incumbent more often on smooth, basin-shaped surfaces.
"""
import math

from recur.core.mechanism_api import Mechanism


class SmallSteps(Mechanism):
    """Replace the proposals with small moves of one numeric parameter each."""

    def propose(self, context, rng):
        space = context.get("space", {})
        incumbent = context.get("incumbent", {})
        frozen = set(context.get("frozen", []))
        names = [n for n in sorted(space) if space[n].get("type") in ("float", "int") and n not in frozen
                 and isinstance(incumbent.get(n), (int, float))]
        if not names:
            return list(context.get("proposals", []))
        out = []
        for _ in range(3):
            name = rng.choice(names)
            spec = space[name]
            low, high, value = float(spec["low"]), float(spec["high"]), float(incumbent[name])
            step = rng.gauss(0.0, 0.06)
            if spec.get("log") and low > 0:
                span = math.log(high) - math.log(low)
                new = math.exp(math.log(max(value, low)) + step * span)
            else:
                new = value + step * (high - low)
            new = min(high, max(low, new))
            if spec["type"] == "int":
                new = int(round(new))
                if new == incumbent[name]:
                    new = int(min(high, max(low, new + (1 if step >= 0 else -1))))
            else:
                new = min(high, max(low, float(f"{new:.4g}")))
            out.append({"kind": name, "payload": {"params": {name: new}}, "rationale": "small step"})
        return out
