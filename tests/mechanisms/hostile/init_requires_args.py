# expect: mechanism-class
# cannot be instantiated without arguments
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    def __init__(self, target):
        self.target = target

    def select(self, proposals, history, rng):
        return proposals[0]
