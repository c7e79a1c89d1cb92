# expect: module-level-code
# an infinite loop at module level
from recur.core.mechanism_api import Mechanism

while True:
    pass


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
