# expect: dynamic-attribute
# setattr of __class__
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        setattr(self, "__class__", object)
        return proposals[0]
