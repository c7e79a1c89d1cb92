# expect: sandbox
# call: select
# an infinite loop in a hook
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        while True:
            pass
        return proposals[0]
