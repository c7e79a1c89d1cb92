# expect: generator-hook
# propose yields forever
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Infinite proposer."""

    def propose(self, context, rng):
        while True:
            yield {"kind": "lr", "payload": {"params": {}}, "rationale": "more"}
