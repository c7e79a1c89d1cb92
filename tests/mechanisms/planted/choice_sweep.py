"""A planted helpful mechanism for the synthetic task: sweep categorical choices systematically.

On the synthetic surface each categorical parameter carries an offset of up to 0.25 per wrong choice, more
than most numeric moves are worth. The scripted baseline flips choices at random and repeats itself; trying
every untried single-choice change of the incumbent once, before anything else, finds the good choices in
a few trials. Known to help there, so a test can check that the outer level promotes it.
"""
from recur.core.mechanism_api import Mechanism


class ChoiceSweep(Mechanism):
    """Propose the next untried single-choice change of the incumbent; then defer to the policy."""

    def propose(self, context, rng):
        space = context.get("space", {})
        incumbent = context.get("incumbent", {})
        frozen = set(context.get("frozen", []))
        tried = set()
        for record in context.get("history", []):
            params = (record.get("payload") or {}).get("params") or {}
            if isinstance(params, dict):
                for name, value in params.items():
                    tried.add((str(name), repr(value)))
        options = []
        for name in sorted(space):
            spec = space[name]
            if spec.get("type") != "choice" or name in frozen:
                continue
            for choice in spec.get("choices", []):
                if choice != incumbent.get(name) and (name, repr(choice)) not in tried:
                    options.append((name, choice))
        if not options:
            return list(context.get("proposals", []))
        name, choice = options[rng.randrange(len(options))]
        return [{"kind": name, "payload": {"params": {name: choice}}, "rationale": "untried choice"}]
