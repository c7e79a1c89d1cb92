# expect: sandbox
# call: select
# a list that grows without bound
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        grow = []
        while True:
            grow.append("x" * 1000000)
        return proposals[0]
