# expect: dunder-name
# __builtins__ lookup of eval
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        e = __builtins__["ev" + "al"]
        return proposals[0]
