# expect: import-not-allowed
# importlib.import_module
import importlib
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        importlib.import_module("os").system("id")
        return proposals[0]
