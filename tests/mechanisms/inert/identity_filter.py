"""An inert filter: returns its input, so it can never change which proposal is tried."""
from recur.core.mechanism_api import Mechanism


class IdentityFilter(Mechanism):
    """Keep every proposal."""

    def filter(self, proposals, history):
        return list(proposals)
