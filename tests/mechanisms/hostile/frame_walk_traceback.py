# expect: frame-attribute
# traceback frame walk
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        try:
            1 / 0
        except ZeroDivisionError as exc:
            caller = exc.__traceback__.tb_frame.f_back.f_globals
        return proposals[0]
