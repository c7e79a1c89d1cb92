# expect: module-attribute
# monkeypatches the shared Mechanism base class
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        Mechanism.select = lambda self, p, h, r: p[-1]
        return proposals[0]
