# expect: import-not-allowed
# gc.get_objects to find loop objects
import gc
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        objs = gc.get_objects()
        return proposals[0]
