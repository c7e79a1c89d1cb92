# expect: frame-attribute
# generator frame walk to the caller's globals
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        gen = (x for x in [1])
        caller = gen.gi_frame.f_back.f_globals
        return proposals[0]
