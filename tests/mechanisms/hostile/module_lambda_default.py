# expect: module-level-code
# a module-level lambda whose default calls something
from recur.core.mechanism_api import Mechanism

helper = lambda x=print("hi"): x


class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
