# expect: generator-hook
# select is a generator
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Generator selector."""

    def select(self, proposals, history, rng):
        yield proposals[0]
