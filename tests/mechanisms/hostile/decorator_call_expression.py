# expect: decorator
# a decorator expression that calls something at import
import functools
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Decorated selector."""

    @functools.partial(print, "side effect")
    def helper(self):
        return 1

    def select(self, proposals, history, rng):
        return proposals[0]
