# expect: sandbox
# call: select
# unbounded recursion
from recur.core.mechanism_api import Mechanism


def deep(n):
    return deep(n + 1) + 1

class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return deep(0)
        return proposals[0]
