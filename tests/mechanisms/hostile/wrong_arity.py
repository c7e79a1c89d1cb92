# expect: hook-arity
# select without rng
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history):
        return proposals[0]
