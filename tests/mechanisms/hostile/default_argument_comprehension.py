# expect: default-argument
# a default value built by a comprehension
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector with a comprehension default."""

    def pick(self, table=[i * i for i in range(10 ** 8)]):
        return table

    def select(self, proposals, history, rng):
        return proposals[0]
