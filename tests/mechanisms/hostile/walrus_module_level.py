# expect: module-level-code
# walrus assignment at module level
from recur.core.mechanism_api import Mechanism

(size := len("abcdef"))


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
