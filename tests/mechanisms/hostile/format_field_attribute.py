# expect: format-string
# str.format reading attributes through a field
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        gen = (x for x in [1])
        text = "{0.gi_frame.f_globals}".format(gen)
        return proposals[0]
