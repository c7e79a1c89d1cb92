# expect: class-level-code
# a loop in the class body
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Class body with a loop."""

    for _i in range(10 ** 9):
        pass

    def select(self, proposals, history, rng):
        return proposals[0]
