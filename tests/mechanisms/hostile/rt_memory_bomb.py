# expect: sandbox
# call: select
# allocates 80 GB at once
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        table = [0] * 10 ** 10
        return proposals[0]
