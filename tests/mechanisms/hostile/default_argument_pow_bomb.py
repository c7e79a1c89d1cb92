# expect: default-argument
# a constant default too large to evaluate
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector with a huge default."""

    def pick(self, k=10 ** 10 ** 10):
        return k

    def select(self, proposals, history, rng):
        return proposals[0]
