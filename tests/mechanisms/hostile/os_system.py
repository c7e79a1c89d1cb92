# expect: import-not-allowed
# os.system
import os
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        os.system("echo pwned")
        return proposals[0]
