# expect: forbidden-builtin
# vars() exposes namespaces
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        state = vars(self)
        return proposals[0]
