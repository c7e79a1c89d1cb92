# expect: dunder-name
# __init_subclass__ runs when a subclass is created
from recur.core.mechanism_api import Mechanism


class Base:
    def __init_subclass__(cls, **kwargs):
        print("ran at import")


class Evil(Base, Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
