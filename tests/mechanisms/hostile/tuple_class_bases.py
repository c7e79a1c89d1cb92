# expect: dunder-attribute
# ().__class__.__bases__[0].__subclasses__()
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        classes = ().__class__.__bases__[0].__subclasses__()
        return proposals[0]
