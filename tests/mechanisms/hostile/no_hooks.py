# expect: no-hook
# a mechanism that overrides no hook (it would never run)
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Does nothing."""

    def helper(self, x):
        return x
