"""Drop proposals that repeat a point already in the history (or earlier in the batch)."""
import json

from recur.core.mechanism_api import Mechanism


def _key(payload):
    return json.dumps((payload or {}).get("params") or {}, sort_keys=True, default=str)


class Dedupe(Mechanism):
    """Filter exact repeats of tried points; keep everything if that would drop every proposal."""

    def filter(self, proposals, history):
        seen = {_key(r.get("payload")) for r in history}
        kept = []
        for proposal in proposals:
            key = _key(proposal.get("payload"))
            if key not in seen:
                seen.add(key)
                kept.append(proposal)
        return kept or list(proposals)
