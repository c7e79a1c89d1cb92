# expect: default-argument
# a default value computed by a call at import
from recur.core.mechanism_api import Mechanism


def helper(cache=sum(range(10 ** 9))):
    return cache


class Evil(Mechanism):
    """Selector with a heavy default."""

    def select(self, proposals, history, rng):
        return proposals[0]
