# expect: forbidden-builtin
# breakpoint() would hang on a debugger
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        breakpoint()
        return proposals[0]
