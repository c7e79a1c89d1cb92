"""HookRunner: how a level calls the active mechanisms' hooks, counting every call.

Each call goes to an *invoker* (the sandbox worker in production) as JSON, is timed, and its return is
validated against the contract (select returns one of its inputs, filter a subset, propose valid proposals,
guide a context that only changes ``frozen``/``guidance``, accept a bool). On an error or invalid return the
default is used and the error recorded. Counts per (mechanism, hook) are what the activation check reads: a
mechanism whose hooks were never called is rejected as inactive.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from recur.core.edits import EditError, coerce
from recur.core.loop import derive_seed

MAX_PROPOSALS = 64
GUIDE_KEYS = ("frozen", "guidance")


class Invoker(Protocol):
    """Calls one hook of one loaded mechanism. ``Sandbox`` (core/sandbox.py) is the production invoker."""

    def call(self, slug: str, hook: str, args: list, seed: int) -> Any: ...


@dataclass
class ActiveMechanism:
    """A mechanism as a level runs it: its store name, source, and the hooks it defines (in call order)."""

    name: str
    source: str
    hooks: list[str]


@dataclass
class HookStats:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_error: str | None = None


class InvalidReturn(ValueError):
    pass


def validate_proposal(p: Any, space: dict[str, dict[str, Any]]) -> None:
    """A proposal is ``{"kind": str, "payload": {"params": {...}}, ...}`` with params inside the space."""
    if not isinstance(p, dict) or not isinstance(p.get("kind"), str) or not isinstance(p.get("payload"), dict):
        raise InvalidReturn(f"a proposal must be {{kind: str, payload: dict}}, got {str(p)[:120]}")
    params = p["payload"].get("params", {})
    if not isinstance(params, dict):
        raise InvalidReturn("payload.params must be a dict")
    for name, value in params.items():
        if name not in space:
            raise InvalidReturn(f"proposal edits unknown parameter {name!r}")
        try:
            coerce(name, value, space[name])
        except EditError as exc:
            raise InvalidReturn(str(exc)) from None


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@dataclass
class HookRunner:
    """Runs the hooks of ``mechanisms`` (in order) through ``invoker`` for one level."""

    mechanisms: list[ActiveMechanism]
    invoker: Invoker | None
    stats: dict[tuple[str, str], HookStats] = field(default_factory=dict)

    def _defining(self, hook: str) -> list[ActiveMechanism]:
        return [m for m in self.mechanisms if hook in m.hooks]

    def _call(self, mech: ActiveMechanism, hook: str, args: list, seed: int, check) -> tuple[bool, Any]:
        stats = self.stats.setdefault((mech.name, hook), HookStats())
        stats.calls += 1
        assert self.invoker is not None
        result = self.invoker.call(mech.name, hook, copy.deepcopy(args), seed)
        stats.seconds += float(getattr(result, "seconds", 0.0))
        error = getattr(result, "error", None)
        if getattr(result, "ok", False):
            try:
                check(result.value)
                return True, result.value
            except InvalidReturn as exc:
                error = f"invalid return: {exc}"
        stats.errors += 1
        stats.last_error = (error or "unknown error")[:500]
        return False, None

    # ------------------------------------------------------------- hooks
    def guide(self, context: dict[str, Any]) -> dict[str, Any]:
        space = context.get("space", {})
        for mech in self._defining("guide"):
            def check(value: Any) -> None:
                if not isinstance(value, dict):
                    raise InvalidReturn("guide must return the context dict")
                frozen = value.get("frozen", [])
                if not isinstance(frozen, list) or any(f not in space for f in frozen):
                    raise InvalidReturn("frozen must list parameter names of the space")
                if space and len(set(frozen)) >= len(space):
                    raise InvalidReturn("guide froze every parameter")
                if not isinstance(value.get("guidance", []), list) or not all(isinstance(g, str) for g in value.get("guidance", [])):
                    raise InvalidReturn("guidance must be a list of strings")
            ok, value = self._call(mech, "guide", [context], 0, check)
            if ok:
                context = {**context, **{k: value.get(k, context.get(k, [])) for k in GUIDE_KEYS}}
        return context

    def propose(self, context: dict[str, Any], seed: int) -> list[dict[str, Any]]:
        space = context.get("space", {})
        for mech in self._defining("propose"):
            def check(value: Any) -> None:
                if not isinstance(value, list) or not value or len(value) > MAX_PROPOSALS:
                    raise InvalidReturn(f"propose must return 1..{MAX_PROPOSALS} proposals")
                for p in value:
                    validate_proposal(p, space)
            ok, value = self._call(mech, "propose", [context], derive_seed(seed, mech.name, "propose"), check)
            if ok:
                context = {**context, "proposals": value}
        return list(context.get("proposals", []))

    def filter(self, proposals: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for mech in self._defining("filter"):
            def check(value: Any) -> None:
                if not isinstance(value, list) or not all(any(_same(v, p) for p in proposals) for v in value):
                    raise InvalidReturn("filter must return a subset of its input")
            ok, value = self._call(mech, "filter", [proposals, history], 0, check)
            if ok and value:  # an empty result keeps the unfiltered list: something must be tried
                proposals = value
        return proposals

    def select(self, proposals: list[dict[str, Any]], history: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        for mech in self._defining("select")[:1]:  # one selector decides; a second one would be inactive
            def check(value: Any) -> None:
                if not any(_same(value, p) for p in proposals):
                    raise InvalidReturn("select must return one of its inputs")
            ok, value = self._call(mech, "select", [proposals, history], derive_seed(seed, mech.name, "select"), check)
            if ok:
                return value
        return proposals[0]

    def accept(self, outcome: dict[str, Any], history: list[dict[str, Any]], seed: int) -> bool | None:
        """The first accept mechanism's verdict, or None to keep the default gate's."""
        for mech in self._defining("accept")[:1]:
            def check(value: Any) -> None:
                if not isinstance(value, bool):
                    raise InvalidReturn("accept must return true or false")
            ok, value = self._call(mech, "accept", [outcome, history], derive_seed(seed, mech.name, "accept"), check)
            if ok:
                return value
        return None

    # ------------------------------------------------------------- counts
    def take_delta(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Calls made since the last ``take_delta`` (stored per trial in the trace, so resume stays exact)."""
        marks = getattr(self, "_marks", {})
        delta = {}
        for key, s in self.stats.items():
            m = marks.get(key, HookStats())
            if s.calls != m.calls:
                delta[key] = {"calls": s.calls - m.calls, "errors": s.errors - m.errors,
                              "seconds": s.seconds - m.seconds, "last_error": s.last_error}
        self._marks = {k: HookStats(s.calls, s.errors, s.seconds, s.last_error) for k, s in self.stats.items()}
        return delta

    def counts(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (mechanism, hook) counts, including zero rows for hooks defined but never called."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for mech in self.mechanisms:
            for hook in mech.hooks:
                s = self.stats.get((mech.name, hook), HookStats())
                out[(mech.name, hook)] = {"calls": s.calls, "errors": s.errors, "seconds": s.seconds, "last_error": s.last_error}
        return out


def finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None
