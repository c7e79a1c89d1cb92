# expect: dunder-name
# __loader__ / __spec__ introspection
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        loader = __loader__
        return proposals[0]
