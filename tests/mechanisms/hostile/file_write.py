# expect: forbidden-builtin
# writes a file with open(..., 'w')
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        open("/tmp/recur_pwned", "w").write("x")
        return proposals[0]
