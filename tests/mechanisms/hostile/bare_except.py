# expect: broad-except
# bare except
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        try:
            x = 1 / 0
        except:
            x = 0
        return proposals[0]
