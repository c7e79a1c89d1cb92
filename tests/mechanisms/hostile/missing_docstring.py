# expect: missing-docstring
# the mechanism class has no docstring
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    def select(self, proposals, history, rng):
        return proposals[0]
