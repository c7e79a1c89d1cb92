# expect: module-level-code
# a 'constant' that allocates 10 GB at import
from recur.core.mechanism_api import Mechanism

PADDING = "x" * 10 ** 10


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
