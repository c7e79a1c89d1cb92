# expect: import-not-allowed
# imports recur internals
from recur.core.workspace import load_workspace
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        x = load_workspace
        return proposals[0]
