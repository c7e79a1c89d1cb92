# expect: import-star
# from math import * (hides the names used)
from math import *
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        x = sqrt(2)
        return proposals[0]
