# expect: module-level-code
# an if-block at module level
from recur.core.mechanism_api import Mechanism



class Evil(Mechanism):
    """Selector."""

    def select(self, proposals, history, rng):
        return proposals[0]


if __name__ == "__main__":
    Evil().select([1], [], None)
