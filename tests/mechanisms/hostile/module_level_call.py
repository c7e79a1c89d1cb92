# expect: module-level-code
# a call at module level
from recur.core.mechanism_api import Mechanism

print("importing")


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
