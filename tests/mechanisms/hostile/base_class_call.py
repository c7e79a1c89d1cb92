# expect: class-keyword
# a base class expression that calls a function
from recur.core.mechanism_api import Mechanism


def make_base():
    return Mechanism


class Evil(make_base()):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
