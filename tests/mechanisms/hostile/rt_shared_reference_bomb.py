# expect: sandbox
# call: select
# a DAG whose JSON expansion is 2**60 nodes
from recur.core.mechanism_api import Mechanism


class Evil(Mechanism):
    """Looks like a selector."""

    def select(self, proposals, history, rng):
        node = [0]
        for _ in range(60):
            node = [node, node]
        return node
        return proposals[0]
