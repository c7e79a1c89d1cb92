# expect: class-keyword
# a metaclass runs code at class creation
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism, metaclass=type):
    """Selector with a metaclass."""

    def select(self, proposals, history, rng):
        return proposals[0]
