# expect: module-alias
# a module object assigned to a variable
import typing
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        m = typing
        leak = m.sys
        return proposals[0]
