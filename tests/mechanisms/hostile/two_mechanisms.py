# expect: mechanism-class
# two Mechanism subclasses
from recur.core.mechanism_api import Mechanism


class First(Mechanism):
    """One."""

    def select(self, proposals, history, rng):
        return proposals[0]


class Second(First):
    """Two."""

    def select(self, proposals, history, rng):
        return proposals[-1]
