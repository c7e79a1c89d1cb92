"""Tabu on kinds: drop proposals whose kind was tried in the last few trials."""
from __future__ import annotations

from recur.core.mechanism_api import Mechanism

TENURE = 3


class TabuKinds(Mechanism):
    """Filter out proposals whose ``kind`` appears among the last ``tenure`` history records."""

    PARAMS = {"tenure": TENURE}

    def filter(self, proposals: list, history: list) -> list:
        tenure = int(self.PARAMS.get("tenure", TENURE))
        recent = {h.get("kind") for h in history[-tenure:]} if tenure > 0 else set()
        kept = [p for p in proposals if p.get("kind") not in recent]
        return kept if kept else list(proposals)
