# expect: class-level-code
# a call in the class body runs at import
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Class body with a side effect."""

    print("loaded")

    def select(self, proposals, history, rng):
        return proposals[0]
