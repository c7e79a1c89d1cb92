# expect: sandbox
# call: select
# a literal format with a 1 GB field width
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        return "{:>1000000000}".format(1)
        return proposals[0]
