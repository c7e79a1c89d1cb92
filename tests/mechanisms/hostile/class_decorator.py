# expect: decorator
# a class decorator runs at import
from recur.core.mechanism_api import Mechanism


def register(cls):
    return cls


@register
class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]
