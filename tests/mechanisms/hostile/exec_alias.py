# expect: forbidden-builtin
# exec taken under another name
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        run = exec
        run("import os")
        return proposals[0]
