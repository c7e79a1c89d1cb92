"""A null mechanism: picks uniformly at random among the level's exchangeable proposals.

It changes most decisions (the level's default takes the first proposal), but the proposals are independent
draws of the same move, so which one is tried makes no systematic difference: any gate that promotes it
more often than its alpha is promoting noise.
"""
from recur.core.mechanism_api import Mechanism


class RandomSelect(Mechanism):
    """Select a proposal uniformly at random."""

    def select(self, proposals, history, rng):
        return proposals[rng.randrange(len(proposals))]
