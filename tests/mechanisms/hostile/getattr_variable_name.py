# expect: dynamic-attribute
# getattr with a name computed at run time
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        name = "".join(["_", "_", "globals", "_", "_"])
        g = getattr(self.select, name)
        return proposals[0]
