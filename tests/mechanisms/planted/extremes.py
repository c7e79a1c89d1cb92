"""A planted harmful mechanism: always proposes every free float parameter at its upper bound (on the
synthetic surface that is far from every basin, and often in the divergence region)."""
from recur.core.mechanism_api import Mechanism


class Extremes(Mechanism):
    """Replace the policy's proposals with the same extreme point, every time."""

    def propose(self, context, rng):
        space = context.get("space", {})
        frozen = context.get("frozen", [])
        params = {}
        for name in sorted(space):
            if space[name].get("type") == "float" and name not in frozen:
                params[name] = space[name]["high"]
        if not params:
            return list(context.get("proposals", []))
        return [{"kind": ",".join(sorted(params)), "payload": {"params": params}, "rationale": "extremes"}]
