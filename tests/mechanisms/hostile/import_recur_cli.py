# expect: import-not-allowed
# imports recur's CLI
import recur.core.cli
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        recur.core.cli.main()
        return proposals[0]
