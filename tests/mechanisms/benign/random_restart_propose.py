"""Propose a few uniformly random points of the space (a restart), keeping the policy's proposals."""
import math

from recur.core.mechanism_api import Mechanism


def _sample(spec, rng):
    kind = spec.get("type")
    if kind == "choice":
        return rng.choice(spec.get("choices") or [None])
    if kind == "bool":
        return rng.random() < 0.5
    low, high = spec.get("low", 0), spec.get("high", 1)
    if spec.get("log") and low > 0:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    value = min(max(value, low), high)  # exp(log(x)) can land a rounding error outside the bounds
    return int(min(max(round(value), math.ceil(low)), math.floor(high))) if kind == "int" else value


class RandomRestart(Mechanism):
    """Append ``n`` random points over the non-frozen parameters."""

    PARAMS = {"n": 2}

    def propose(self, context, rng):
        proposals = list(context.get("proposals") or [])
        space = context.get("space") or {}
        frozen = set(context.get("frozen") or [])
        free = [name for name in sorted(space) if name not in frozen]
        for _ in range(int(self.PARAMS["n"])):
            if not free:
                break
            params = {name: _sample(space[name], rng) for name in free}
            proposals.append({"kind": ",".join(free), "payload": {"params": params}, "rationale": "random restart"})
        return proposals
