# expect: import-not-allowed
# ctypes raw memory
import ctypes
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        ctypes.string_at(0)
        return proposals[0]
