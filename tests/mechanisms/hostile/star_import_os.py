# expect: import-not-allowed
# from os import *
from os import *
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        system("id")
        return proposals[0]
