"""An accept that keeps nothing: it vetoes every keep the default rule would make."""
from recur.core.mechanism_api import Mechanism


class NeverKeep(Mechanism):
    """Say discard, whatever the gate said."""

    def accept(self, outcome, history, rng):
        return False
