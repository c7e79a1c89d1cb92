# expect: dynamic-attribute
# getattr passed around as a value
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        fetch = getattr
        fetch(self, "select")
        return proposals[0]
