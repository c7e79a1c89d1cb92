"""Thompson sampling over kinds with a Beta(1 + kept, 1 + not kept) posterior."""
from recur.core.mechanism_api import Mechanism


class Thompson(Mechanism):
    """Draw a kept-rate for each kind from its Beta posterior and select the best draw."""

    def select(self, proposals, history, rng):
        wins = {}
        losses = {}
        for record in history:
            kind = record.get("kind")
            if record.get("kept") is True:
                wins[kind] = wins.get(kind, 0) + 1
            else:
                losses[kind] = losses.get(kind, 0) + 1
        best, best_draw = proposals[0], -1.0
        for proposal in proposals:
            kind = proposal.get("kind")
            draw = rng.betavariate(1 + wins.get(kind, 0), 1 + losses.get(kind, 0))
            if draw > best_draw:
                best, best_draw = proposal, draw
        return best
