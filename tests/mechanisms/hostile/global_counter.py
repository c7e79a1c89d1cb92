# expect: global-statement
# module state mutated through global
from recur.core.mechanism_api import Mechanism

CALLS = 0

class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        global CALLS
        CALLS = CALLS + 1
        return proposals[0]
