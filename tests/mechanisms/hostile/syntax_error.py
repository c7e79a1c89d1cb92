# expect: syntax-error
# does not parse
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng)
        return proposals[0]
