# expect: sandbox
# call: select
# raises SystemExit inside a hook
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        raise SystemExit(3)
        return proposals[0]
