# expect: module-attribute
# typing.sys.modules reaches os
import typing
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        typing.sys.modules["os"].system("id")
        return proposals[0]
