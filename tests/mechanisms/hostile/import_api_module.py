# expect: import-not-allowed
# import recur.core.mechanism_api binds `recur` (a path to everything)
import recur.core.mechanism_api
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
