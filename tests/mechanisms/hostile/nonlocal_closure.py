# expect: global-statement
# nonlocal state in a closure
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        count = 0

        def bump():
            nonlocal count
            count += 1

        bump()
        return proposals[0]
