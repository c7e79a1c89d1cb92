# expect: hook-arity
# a hook that is a staticmethod
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    @staticmethod
    def select(proposals, history, rng):
        return proposals[0]
