"""Add a short guidance line to the policy's prompt context when the search has stalled."""
from __future__ import annotations

from recur.core.mechanism_api import Mechanism

STALL = 5


class StallHint(Mechanism):
    """Append guidance asking for larger moves after ``stall`` trials without a kept improvement."""

    PARAMS = {"stall": STALL, "text": "No improvement lately: try a larger change to one parameter."}

    def guide(self, context: dict) -> dict:
        history = context.get("history") or []
        stall = int(self.PARAMS.get("stall", STALL))
        since = 0
        for record in reversed(history):
            if record.get("kept") is True:
                break
            since += 1
        guidance = list(context.get("guidance") or [])
        if since >= stall and self.PARAMS["text"] not in guidance:
            guidance.append(self.PARAMS["text"])
        out = dict(context)
        out["guidance"] = guidance
        return out
