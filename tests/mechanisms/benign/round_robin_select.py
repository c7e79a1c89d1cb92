"""Round-robin over kinds: select the proposal whose kind was tried least recently."""
import itertools

from recur.core.mechanism_api import Mechanism


class RoundRobin(Mechanism):
    """Prefer kinds never tried, then the one whose last try is oldest."""

    def select(self, proposals, history, rng):
        last_seen = {}
        for index, record in zip(itertools.count(), history):
            last_seen[record.get("kind")] = index
        order = sorted(range(len(proposals)), key=lambda i: (last_seen.get(proposals[i].get("kind"), -1), i))
        return proposals[order[0]]
