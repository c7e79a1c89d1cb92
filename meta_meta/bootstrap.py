"""Recursive bootstrapping: mechanisms that level k-1 found for level k-2 are offered to level k-1 itself.

At level k (>= 3), every other candidate is a *port*: the best mechanism written for level k-2 (promoted if
any, else the best-scoring one that was exercised) becomes a candidate for level k-1 through the store's
port operation (new branch, ``Parent`` = the original). Because hooks see only the shared record shape, a
tabu memory over level-1 edits is, unchanged, a tabu memory over level-2 mechanism families. A port earns
promotion at its new level like any other candidate.
"""
from __future__ import annotations

from typing import Any

from recur.core.records import Trial


class PortProposer:
    def __init__(self, store: Any, model: str = "port"):
        self.store = store
        self.model = model

    def propose(self, level: int, step: int, history: list[Trial]) -> dict[str, Any] | None:
        if level < 3 or (history and history[-1].candidate.payload.get("port_of")):
            return None  # alternate: never two ports in a row, so the policy's own candidates get their turn
        target = level - 1
        ported = {m.parent for m in self.store.list(level=target) if m.parent}
        pool = [m for m in self.store.list(level=target - 1)
                if m.branch not in ported and m.status in ("promoted", "rejected", "applied") and m.score is not None]
        if not pool:
            return None
        pool.sort(key=lambda m: (m.status == "promoted", m.score or 0.0, m.branch), reverse=True)
        original = pool[0]
        return {"family": original.trailers.get("Family") or original.slug, "slug": original.slug,
                "source": self.store.source(original.branch), "parent": original.branch, "params": {},
                "diagnosis": f"recursive bootstrapping: port of {original.name} (level {target - 1}, score "
                             f"{original.score:.3g}, {original.status}) to level {target}",
                "model": self.model}
