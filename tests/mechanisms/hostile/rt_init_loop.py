# expect: sandbox
# call: select
# the constructor never returns
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector with a hanging constructor."""

    def __init__(self, depth=3):
        self.depth = depth
        while self.depth > 0:
            self.depth = self.depth + 1

    def select(self, proposals, history, rng):
        return proposals[0]
