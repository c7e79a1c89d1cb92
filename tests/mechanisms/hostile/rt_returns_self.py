# expect: sandbox
# call: select
# returns the mechanism object
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return self
        return proposals[0]
