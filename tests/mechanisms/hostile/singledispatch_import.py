# expect: import-not-allowed
# functools.singledispatch evaluates annotations
from functools import singledispatch
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        f = singledispatch(len)
        return proposals[0]
