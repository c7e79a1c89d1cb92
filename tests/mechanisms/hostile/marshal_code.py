# expect: import-not-allowed
# marshal code objects
import marshal
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        code = marshal.loads(b"")
        return proposals[0]
