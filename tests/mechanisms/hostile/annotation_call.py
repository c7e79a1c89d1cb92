# expect: annotation-code
# an annotation evaluated at def time
from recur.core.mechanism_api import Mechanism


def helper(x: print("ran at import")) -> None:
    return None


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
