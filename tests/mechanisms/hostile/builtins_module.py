# expect: import-not-allowed
# import builtins to reach eval
import builtins
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        builtins.eval("1+1")
        return proposals[0]
