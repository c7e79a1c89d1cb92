# expect: private-attribute
# reaches into Random's private methods
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        k = rng._randbelow(10)
        return proposals[0]
