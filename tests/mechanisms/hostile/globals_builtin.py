# expect: forbidden-builtin
# globals() exposes the module namespace
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        g = globals()
        return proposals[0]
