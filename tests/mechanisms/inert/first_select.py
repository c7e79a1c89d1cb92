"""An inert selector: picks the first proposal, which is what the level does without it."""
from recur.core.mechanism_api import Mechanism


class FirstSelect(Mechanism):
    """Select the first proposal."""

    def select(self, proposals, history, rng):
        return proposals[0]
