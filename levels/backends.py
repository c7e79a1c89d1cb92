"""Which proposal backend and hook invoker a run uses, chosen from ``--model``.

``scripted`` is the non-LLM baseline (seeded local search); every other model string goes through the
LLM client (litellm), ``offline`` being the embedded SmolLM2 model.
"""
from __future__ import annotations

from typing import Any, Callable

import random

from recur.core.policy import ScriptedBackend, perturb


class ScriptedMechanismBackend:
    """The scripted baseline above level 1: answers the trace diagnosis with an untried family that claims to
    address it (defaults perturbed), then perturbs the best-scoring family. Seeded, no model."""

    name = "scripted"

    def generate(self, context: dict[str, Any], seed: int, trial_id: str) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        families = context["families"]
        tags = set(context.get("diagnosis", {}).get("tags", []))
        tried = [h for h in context.get("history", []) if h.get("kind") in families]
        untried = [f for f in sorted(families) if f not in {h["kind"] for h in tried}]
        fitting = [f for f in untried if tags & set(families[f]["answers"])] or untried
        space = context["space"]
        if fitting:
            family = rng.choice(fitting)
            point = {**context["incumbent"], "family": family}
        else:
            best = max(tried, key=lambda h: h.get("metric") if h.get("metric") is not None else float("-inf"))
            family = best["kind"]
            point = {**context["incumbent"], **(best.get("payload", {}).get("params") or {}), "family": family}
        names = sorted(n for n in space if n.startswith(family + "."))
        params = dict(point)
        for name in rng.sample(names, k=min(len(names), 2)):
            params[name] = perturb(space, point, name, rng)
        why = f"answers {', '.join(sorted(tags & set(families[family]['answers']))) or 'exploration'}"
        return [{"kind": family, "payload": {"params": params}, "rationale": f"scripted: {family} {why}"}]


def fallback_backend(level: int) -> Any:
    """What proposes when the model gave no usable answer after its re-asks: the scripted move (recorded as such)."""
    return ScriptedBackend() if level == 1 else ScriptedMechanismBackend()


def backend_factory(opts: Any, rt: Any) -> Callable[[int], Any]:
    def make(level: int) -> Any:
        model = opts.level_models.get(str(level), opts.model)
        if model == "scripted":
            return ScriptedBackend() if level == 1 else ScriptedMechanismBackend()
        from recur.core.llm import LLMClient, LLMConfig
        from recur.levels.llm_backends import Level1LLMBackend, OuterLLMBackend

        def on_call(call: dict) -> None:
            rt.trace.record_llm_call(rt.run_id, call)
            rt.budget.charge({"tokens": (call.get("prompt_tokens") or 0) + (call.get("completion_tokens") or 0),
                              "usd": call.get("cost_usd") or 0.0})

        client = LLMClient(LLMConfig(model=model, api_base=opts.api_base, max_tokens=160 if model == "offline" else 1500,
                                     timeout_s=opts.llm_timeout), on_call=on_call)
        return Level1LLMBackend(client) if level == 1 else OuterLLMBackend(client, level)

    return make


def invoker_factory(mechanisms: list) -> Any:
    from recur.core.sandbox import Sandbox

    return Sandbox({m.name: m.source for m in mechanisms})
