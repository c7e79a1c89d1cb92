# expect: forbidden-builtin
# __import__('os')
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        __import__("os").system("echo pwned")
        return proposals[0]
