"""An accept that keeps everything: at level 1 a search move (keep any edit), at an outer level it would
promote every raced candidate, evidence or not."""
from recur.core.mechanism_api import Mechanism


class AlwaysKeep(Mechanism):
    """Say keep, whatever the gate said."""

    def accept(self, outcome, history, rng):
        return True
