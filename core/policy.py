"""A level's search policy: the pipeline of hook points every level runs to choose its next candidate.

    context -> guide -> backend.generate (the model, or the scripted baseline) -> propose -> filter -> select

The backend is level-specific (prompts differ); the pipeline and the hook calls are not. With no mechanisms
active the hooks are the defaults: the backend's first proposal is tried.
"""
from __future__ import annotations

import math
import random
from typing import Any, Protocol

from recur.core.hooks import HookRunner, validate_proposal, InvalidReturn


class ProposalBackend(Protocol):
    """Turns a context into proposals: an LLM behind prompts, or the scripted non-LLM baseline."""

    name: str

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]: ...


#: Context keys that are not part of a decision record: large, or rebuilt when the decision is replayed.
HEAVY_KEYS = ("history", "space", "source", "task", "families")


class SearchPolicy:
    def __init__(self, backend: ProposalBackend, hooks: HookRunner, fallback: ProposalBackend | None = None,
                 on_fallback=None):
        self.backend = backend
        self.hooks = hooks
        self.fallback = fallback
        self.on_fallback = on_fallback

    def offer(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        """The backend's valid proposals for a guided context (the scripted move when the model gave none)."""
        from recur.core.llm import NoUsableAnswer

        try:
            own = self.backend.generate(context, seed, trial_id)
        except NoUsableAnswer as exc:  # the model answered, but nothing usable after its re-asks
            if self.fallback is None:
                raise
            if self.on_fallback:
                self.on_fallback(trial_id, str(exc))
            own = [{**p, "rationale": f"fallback after model failure: {p.get('rationale', '')}"}
                   for p in self.fallback.generate(context, seed, trial_id)]
        valid = []
        for p in own:
            try:
                validate_proposal(p, context["space"])
                if not set(p["payload"].get("params", {})) & set(context.get("frozen", [])):
                    valid.append(p)
            except InvalidReturn:
                continue
        if not valid and self.fallback is not None:  # nothing usable: the scripted move keeps the loop going
            valid = self.fallback.generate(context, seed, trial_id)
        return valid

    def choose(self, context: dict[str, Any], seed: int, trial_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Return (chosen proposal, the guided context it was chosen in, the decision record).

        The decision record (the unguided context without its heavy keys, the offered proposals and the seed)
        is stored with the candidate, so an outer level can replay this decision through a new mechanism.
        """
        guided = self.hooks.guide(context)
        offered = self.offer(guided, seed, trial_id)
        chosen = self.hooks.pick(guided, offered, seed)
        record = {"context": {k: v for k, v in context.items() if k not in HEAVY_KEYS}, "offered": offered,
                  "seed": seed}
        return chosen, guided, record


def perturb(space: dict[str, dict[str, Any]], point: dict[str, Any], name: str, rng: random.Random, scale: float = 1.0) -> Any:
    """A local move of one parameter around its current value, inside its declared range."""
    spec = space[name]
    kind = spec.get("type", "float")
    current = point.get(name)
    if kind == "bool":
        return not bool(current)
    if kind == "choice":
        choices = [c for c in spec.get("choices", []) if c != current] or spec.get("choices", [current])
        return rng.choice(choices)
    low, high = spec["low"], spec["high"]
    if current is None:
        current = (low + high) / 2
    if spec.get("log") and low > 0:
        value = math.exp(math.log(max(current, low)) + rng.gauss(0.0, 0.5 * scale))
    else:
        value = current + rng.gauss(0.0, 0.2 * scale) * (high - low)
    value = min(high, max(low, value))
    if kind == "int":
        value = int(round(value))
        if value == current:
            value = min(high, max(low, current + rng.choice((-1, 1))))
        return value
    return float(f"{value:.4g}")


class ScriptedBackend:
    """The scripted baseline: seeded, deterministic, no model. Perturbs 1-3 parameters of the incumbent.

    It is a pure-search baseline (and the fast policy for tests), not a language model.
    """

    name = "scripted"

    def __init__(self, proposals: int = 3):
        self.n = proposals

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        space = context["space"]
        names = [n for n in sorted(space) if n not in set(context.get("frozen", []))] or sorted(space)
        point = dict(context.get("incumbent", {}))
        out = []
        for _ in range(self.n):
            chosen = rng.sample(names, k=min(len(names), rng.choice((1, 1, 2, 3))))
            params = {n: perturb(space, point, n, rng) for n in sorted(chosen)}
            out.append({"kind": ",".join(sorted(params)), "payload": {"params": params}, "rationale": "scripted local move"})
        return out
