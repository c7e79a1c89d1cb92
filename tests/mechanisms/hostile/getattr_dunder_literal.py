# expect: dynamic-attribute
# getattr with a literal dunder name
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        g = getattr(self.select, "__globals__")
        return proposals[0]
