# expect: sandbox
# call: select
# returns a set (not JSON)
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return {1, 2, 3}
        return proposals[0]
