# expect: broad-except
# catches BaseException to survive interrupts
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        while True:
            try:
                proposals = proposals * 2
            except BaseException:
                pass
        return proposals[0]
