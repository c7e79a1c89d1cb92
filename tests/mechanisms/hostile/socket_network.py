# expect: import-not-allowed
# opens a network socket
import socket
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        s = socket.create_connection(("example.com", 80))
        return proposals[0]
