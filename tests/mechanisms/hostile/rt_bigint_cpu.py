# expect: sandbox
# call: select
# a big-integer power that runs for minutes
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return 7 ** (10 ** 9) % 10
        return proposals[0]
