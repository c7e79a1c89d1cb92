"""Which proposal backend and hook invoker a run uses, chosen from ``--model``.

``scripted`` is the non-LLM baseline (seeded local search); every other model string goes through the
LLM client (litellm), ``offline`` being the embedded SmolLM2 model.
"""
from __future__ import annotations

from typing import Any, Callable

from recur.core.policy import ScriptedBackend


def backend_factory(opts: Any, rt: Any) -> Callable[[int], Any]:
    def make(level: int) -> Any:
        model = opts.level_models.get(str(level), opts.model)
        if model == "scripted":
            return ScriptedBackend()
        raise NotImplementedError(f"model {model!r} is not wired yet")

    return make


def invoker_factory(mechanisms: list) -> Any:
    from recur.core.sandbox import Sandbox

    return Sandbox({m.name: m.source for m in mechanisms})
