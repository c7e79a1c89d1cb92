"""Freeze unproductive parameters (the reference paper's "level 1.5": parameter-level guidance).

``guide`` reads the last ``window`` history records. A parameter of ``context["space"]`` that was edited in at
least ``min_tries`` of them (it appears in ``payload.params``, or in ``kind`` split on "," when a record has
no params) and was never part of a kept trial is frozen. A frozen parameter that was edited somewhere in the
history (so it is not one the user pinned: those never appear) and has rested at least ``rest`` records
since its last edit is unfrozen to be tried again. What history freezes (new or already frozen) never takes
``frozen`` past all but ``min_free`` (>= 1) parameters of the space (the most-tried win; the rest stay or become
free); other incoming frozen names stay frozen, except that when they already cover the whole space one of them
(edited before pinned, longest rested first) is unfrozen. So ``frozen`` only ever names parameters of the space
and leaves at least one free (what the level's hook runner accepts).
One guidance line says what was frozen, unfrozen and which edits helped lately. Only ``frozen`` and
``guidance`` change; everything else of the context is returned as it came.
"""
from recur.core.mechanism_api import Mechanism


def _items(value):
    return value if isinstance(value, (list, tuple)) else []


def _edited(record):
    payload = record.get("payload")
    if isinstance(payload, dict):
        params = payload.get("params")
        if isinstance(params, dict) and params:
            return [str(name) for name in params]
    kind = record.get("kind")
    if isinstance(kind, str):
        return [part.strip() for part in kind.split(",") if part.strip()]
    return []


class FreezeGuidance(Mechanism):
    """Freeze parameters whose recent edits never helped, unfreeze rested ones, and say so in the guidance."""

    PARAMS = {"window": 10, "min_tries": 3, "rest": 15, "min_free": 2}

    def guide(self, context):
        p = self.PARAMS
        window = max(int(p.get("window", 10)), 1)
        min_tries = max(int(p.get("min_tries", 3)), 1)
        rest = max(int(p.get("rest", 15)), 0)
        min_free = max(int(p.get("min_free", 2)), 1)
        space = context.get("space")
        if not isinstance(space, dict):
            return context
        names = sorted([name for name in space if isinstance(name, str)])
        known = {}
        for name in names:
            known[name] = True
        history = [r for r in _items(context.get("history")) if isinstance(r, dict)]
        frozen_in = [name for name in _items(context.get("frozen")) if isinstance(name, str) and name in known]
        is_frozen = {}
        for name in frozen_in:
            is_frozen[name] = True
        last_edit = {}
        for index in range(len(history)):
            for name in _edited(history[index]):
                last_edit[name] = index
        tries = {}
        helps = {}
        for record in history[-window:]:
            for name in _edited(record):
                tries[name] = tries.get(name, 0) + 1
                if record.get("kept") is True:
                    helps[name] = helps.get(name, 0) + 1
        freeze = [n for n in names if tries.get(n, 0) >= min_tries and helps.get(n, 0) == 0]
        unfreeze = []
        for name in names:
            if not is_frozen.get(name) or name in freeze:
                continue
            if helps.get(name, 0) > 0:
                unfreeze.append(name)
            elif name in last_edit and len(history) - 1 - last_edit[name] >= rest:
                unfreeze.append(name)
        # The frozen list is capped. Names frozen on the history's evidence (``freeze``, whether or not they came
        # in frozen) never take the count past ``len(names) - min_free``: the most-tried ones win, the others
        # stay (or become) free. Incoming frozen names that are neither unfrozen nor re-frozen are kept as
        # they came, whatever ``min_free`` says; only if they already cover the whole space is one of them
        # released (an edited one before a pinned one, the longest rested first), since the level refuses a
        # guide that freezes every parameter.
        limit = len(names) - min(min_free, len(names))
        pinned = [n for n in names if is_frozen.get(n) and n not in unfreeze and n not in freeze]
        count = len(pinned)
        chosen = {}
        for item in sorted([[-tries.get(n, 0), n] for n in freeze]):
            if count >= limit:
                break
            chosen[item[1]] = True
            count += 1
        released = [n for n in freeze if is_frozen.get(n) and not chosen.get(n)]
        if names and len(pinned) >= len(names):
            order = sorted([[0 if n in last_edit else 1, last_edit.get(n, -1), n] for n in pinned])
            released.append(order[0][2])
        new_frozen = []
        for name in frozen_in:
            if name not in unfreeze and name not in released and name not in new_frozen:
                new_frozen.append(name)
        added = []
        for name in freeze:
            if chosen.get(name) and name not in new_frozen:
                new_frozen.append(name)
                added.append(name)
        guidance = [g for g in _items(context.get("guidance")) if isinstance(g, str)]
        parts = []
        if added:
            parts.append(
                "Frozen %s: edited in the last %d trials without a single kept improvement." % (", ".join(added), window)
            )
        if unfreeze:
            parts.append("Unfrozen %s: rested or helped, worth trying again." % ", ".join(unfreeze))
        if released:
            parts.append(
                "Unfrozen %s: too few parameters were left free to edit." % ", ".join(released)
            )
        helped = [n for n in names if helps.get(n, 0) > 0 and n not in new_frozen]
        if helped and (added or unfreeze or released):
            counts = ["%s (%d kept of %d)" % (n, helps[n], tries[n]) for n in helped]
            parts.append("Edits that helped recently: %s; focus there." % ", ".join(counts))
        if parts:
            line = "Parameter guidance: " + " ".join(parts)
            if line not in guidance:
                guidance.append(line)
        result = dict(context)
        result["frozen"] = new_frozen
        result["guidance"] = guidance
        return result
