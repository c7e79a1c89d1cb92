# expect: forbidden-builtin
# reads a file with open()
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        secret = open("/etc/passwd").read()
        return proposals[0]
