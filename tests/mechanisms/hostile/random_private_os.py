# expect: private-attribute
# random._os reaches os
import random
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        random._os.system("id")
        return proposals[0]
