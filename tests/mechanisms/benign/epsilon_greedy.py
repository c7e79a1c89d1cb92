"""Epsilon-greedy selection over proposal kinds: exploit the kind with the best kept-rate, explore otherwise."""
from recur.core.mechanism_api import Mechanism


class EpsilonGreedy(Mechanism):
    """With probability ``epsilon`` pick a random proposal, else one whose kind has the best kept-rate."""

    PARAMS = {"epsilon": 0.2}

    def select(self, proposals, history, rng):
        if rng.random() < float(self.PARAMS.get("epsilon", 0.2)):
            return proposals[rng.randrange(len(proposals))]
        kept = {}
        tried = {}
        for record in history:
            kind = record.get("kind")
            tried[kind] = tried.get(kind, 0) + 1
            if record.get("kept") is True:
                kept[kind] = kept.get(kind, 0) + 1
        best = proposals[0]
        best_rate = -1.0
        for proposal in proposals:
            kind = proposal.get("kind")
            rate = kept.get(kind, 0) / tried[kind] if tried.get(kind) else 0.5
            if rate > best_rate:
                best, best_rate = proposal, rate
        return best
