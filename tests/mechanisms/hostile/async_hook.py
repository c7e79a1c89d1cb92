# expect: async
# an async hook returns a coroutine
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Async selector."""

    async def select(self, proposals, history, rng):
        return proposals[0]
