# expect: dunder-attribute
# f-string evaluating a dunder chain
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        text = f"{self.__class__.__mro__}"
        return proposals[0]
