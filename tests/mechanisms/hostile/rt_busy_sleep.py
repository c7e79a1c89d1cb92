# expect: sandbox
# call: select
# 'sleeps' forever in a busy-wait loop
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        ticks = 0
        while ticks < 10 ** 15:
            ticks += 1
        return proposals[0]
