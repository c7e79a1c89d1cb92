# expect: import-not-allowed
# from typing import sys
from typing import sys
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        sys.exit(0)
        return proposals[0]
