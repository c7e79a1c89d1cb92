# expect: import-not-allowed
# relative import of a sibling
from . import secrets
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        x = secrets
        return proposals[0]
