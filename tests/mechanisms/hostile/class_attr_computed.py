# expect: class-level-code
# a class attribute computed by a call
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Computed class constant."""

    TABLE = list(range(10 ** 9))

    def select(self, proposals, history, rng):
        return proposals[0]
