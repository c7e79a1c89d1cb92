"""UCB1 over proposal kinds (reward: a kept trial)."""
import math
from collections import Counter

from recur.core.mechanism_api import Mechanism


class UcbKinds(Mechanism):
    """Select the proposal whose kind has the highest UCB1 score; untried kinds first, ties broken by rng."""

    PARAMS = {"c": 1.4}

    def select(self, proposals, history, rng):
        pulls = Counter(r.get("kind") for r in history)
        wins = Counter(r.get("kind") for r in history if r.get("kept") is True)
        total = max(sum(pulls.values()), 1)
        scored = []
        for proposal in proposals:
            kind = proposal.get("kind")
            n = pulls.get(kind, 0)
            if n == 0:
                score = math.inf
            else:
                score = wins.get(kind, 0) / n + self.PARAMS["c"] * math.sqrt(math.log(total) / n)
            scored.append((score, rng.random(), proposal))
        scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return scored[0][2]
