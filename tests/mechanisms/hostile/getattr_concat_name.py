# expect: dynamic-attribute
# getattr with a string-built dunder name
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        klass = getattr(proposals, "__cl" + "ass__")
        return proposals[0]
