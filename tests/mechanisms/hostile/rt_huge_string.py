# expect: sandbox
# call: select
# returns a 100 MB string (over the result cap)
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return "x" * 10 ** 8
        return proposals[0]
