"""Freeze parameters that were edited often without ever producing a kept trial."""
from recur.core.mechanism_api import Mechanism


class FreezeUseless(Mechanism):
    """Add to ``frozen`` every parameter tried ``min_tries`` times with no kept result (never all of them)."""

    PARAMS = {"min_tries": 4}

    def guide(self, context):
        space = context.get("space") or {}
        tries = {}
        kept = {}
        for record in context.get("history") or []:
            params = (record.get("payload") or {}).get("params") or {}
            for name in params:
                tries[name] = tries.get(name, 0) + 1
                if record.get("kept") is True:
                    kept[name] = kept.get(name, 0) + 1
        frozen = [f for f in (context.get("frozen") or []) if f in space]
        for name in sorted(space):
            if tries.get(name, 0) >= self.PARAMS["min_tries"] and not kept.get(name) and name not in frozen:
                if len(frozen) + 1 < len(space):
                    frozen.append(name)
        out = dict(context)
        out["frozen"] = frozen
        return out
