# expect: decorator
# a user decorator runs at import
from recur.core.mechanism_api import Mechanism


def tracer(fn):
    return fn


class Evil(Mechanism):
    """Decorated selector."""

    @tracer
    def select(self, proposals, history, rng):
        return proposals[0]
