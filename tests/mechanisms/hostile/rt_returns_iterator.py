# expect: sandbox
# call: select
# returns an infinite iterator instead of a value
import itertools
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return itertools.count()
        return proposals[0]
