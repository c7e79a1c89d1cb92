# expect: import-not-allowed
# sys.modules lookup of os
import sys
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        sys.modules["os"].system("id")
        return proposals[0]
