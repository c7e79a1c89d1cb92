# expect: hook-arity
# a hook taking *args/**kwargs
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Selector."""

    def select(self, *args, **kwargs):
        return args[0][0]
