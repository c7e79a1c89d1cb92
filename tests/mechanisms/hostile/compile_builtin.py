# expect: forbidden-builtin
# compile() builds code objects
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        code = compile("1", "x", "eval")
        return proposals[0]
