"""HookRunner: how a level calls the active mechanisms' hooks, counting every call and every changed decision.

Each call goes to an *invoker* (the sandbox worker in production) as JSON, is timed, and its return is
validated against the contract (select returns one of its inputs, filter a subset, propose valid proposals,
guide a context that only changes ``frozen``/``guidance``, accept a bool). On an error or invalid return the
default is used and the error recorded.

A call is not an effect. After each decision the runner replays the same pipeline on the same input and seed
with one (mechanism, hook) switched off and counts the call as *changed* when the decision differs: for
``guide`` the context handed to the proposer (frozen, guidance), for ``propose``/``filter``/``select`` the
proposal chosen, for ``accept`` the keep verdict. Replays reuse recorded returns (a cache keyed by the call's
JSON and seed), so only calls with new inputs reach the sandbox, and replays are never counted as calls.
``replay_changes`` runs the same comparison for a whole mechanism over recorded decisions: the dry run that
rejects a candidate which would change nothing before it spends a single trial.

A mechanism under test (``ActiveMechanism.candidate``) takes precedence for the hooks it defines: it decides
``select`` and ``accept`` (only the first defining mechanism decides those) and runs last in the ``guide``,
``propose`` and ``filter`` chains, so its word is final there too.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from recur.core.edits import EditError, coerce
from recur.core.loop import derive_seed

MAX_PROPOSALS = 64
GUIDE_KEYS = ("frozen", "guidance")
PICK_HOOKS = ("propose", "filter", "select")
VETO_ONLY = "veto_only"  # an accept outcome with this set: the default is a promotion gate, hooks may only veto


class Invoker(Protocol):
    """Calls one hook of one loaded mechanism. ``Sandbox`` (core/sandbox.py) is the production invoker."""

    def call(self, slug: str, hook: str, args: list, seed: int) -> Any: ...


@dataclass
class ActiveMechanism:
    """A mechanism as a level runs it: its store name, source, the hooks it defines, and whether it is the
    candidate under test (which takes precedence over incumbents)."""

    name: str
    source: str
    hooks: list[str]
    candidate: bool = False


@dataclass
class HookStats:
    calls: int = 0
    changed: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "changed": self.changed, "errors": self.errors, "seconds": self.seconds,
                "last_error": self.last_error}


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


def canonical(value: Any) -> str:
    """One JSON spelling per value, so 'same decision' means same JSON."""
    return json.dumps(value, sort_keys=True, default=str)


def same(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def guided_part(context: dict[str, Any]) -> dict[str, Any]:
    """What ``guide`` decides: the frozen parameters and guidance lines handed to the proposer."""
    return {k: context.get(k, []) for k in GUIDE_KEYS}


Skip = frozenset  # of (mechanism name, hook) pairs switched off in a replay


@dataclass
class HookRunner:
    """Runs the hooks of ``mechanisms`` through ``invoker`` for one level, counting calls and changed decisions."""

    mechanisms: list[ActiveMechanism]
    invoker: Invoker | None
    stats: dict[tuple[str, str], HookStats] = field(default_factory=dict)
    _cache: dict[tuple[str, str, str, int], tuple[bool, Any]] = field(default_factory=dict, repr=False)
    _marks: dict[tuple[str, str], HookStats] = field(default_factory=dict, repr=False)

    def order(self, hook: str) -> list[ActiveMechanism]:
        """Mechanisms defining ``hook`` in call order: a candidate first for deciding hooks, last in chains."""
        defining = [m for m in self.mechanisms if hook in m.hooks]
        cand = [m for m in defining if m.candidate]
        rest = [m for m in defining if not m.candidate]
        return cand + rest if hook in ("select", "accept") else rest + cand

    # ------------------------------------------------------------- one call
    def _invoke(self, mech: ActiveMechanism, hook: str, args: list, seed: int,
                check: Callable[[Any], None], counted: bool) -> tuple[bool, Any]:
        text = canonical(args)
        key = (mech.name, hook, text, seed)
        if key in self._cache:
            return self._cache[key]
        stats = self.stats.setdefault((mech.name, hook), HookStats()) if counted else HookStats()
        stats.calls += 1
        assert self.invoker is not None
        result = self.invoker.call(mech.name, hook, json.loads(text), seed)  # a private copy, cheaper than deepcopy
        stats.seconds += float(getattr(result, "seconds", 0.0))
        error = getattr(result, "error", None)
        answer: tuple[bool, Any] = (False, None)
        if getattr(result, "ok", False):
            try:
                check(result.value)
                answer = (True, result.value)
            except InvalidReturn as exc:
                error = f"invalid return: {exc}"
        if not answer[0]:
            stats.errors += 1
            stats.last_error = (error or "unknown error")[:500]
        self._cache[key] = answer
        return answer

    def _changed(self, mech: ActiveMechanism, hook: str) -> None:
        self.stats.setdefault((mech.name, hook), HookStats()).changed += 1

    def clear_cache(self) -> None:
        """Forget recorded returns (called once per decision: the cache only serves that decision's replays)."""
        self._cache.clear()

    # ------------------------------------------------------------- pipelines
    def _guide(self, context: dict[str, Any], skip: frozenset, counted: bool) -> dict[str, Any]:
        space = context.get("space", {})

        def check(value: Any) -> None:
            if not isinstance(value, dict):
                raise InvalidReturn("guide must return the context dict")
            frozen = value.get("frozen", [])
            if not isinstance(frozen, list) or any(f not in space for f in frozen):
                raise InvalidReturn("frozen must list parameter names of the space")
            if space and len(set(frozen)) >= len(space):
                raise InvalidReturn("guide froze every parameter")
            guidance = value.get("guidance", [])
            if not isinstance(guidance, list) or not all(isinstance(g, str) for g in guidance):
                raise InvalidReturn("guidance must be a list of strings")

        for mech in self.order("guide"):
            if (mech.name, "guide") in skip:
                continue
            ok, value = self._invoke(mech, "guide", [context], 0, check, counted)
            if ok:
                context = {**context, **{k: value.get(k, context.get(k, [])) for k in GUIDE_KEYS}}
        return context

    def _pick(self, context: dict[str, Any], offered: list[dict[str, Any]], seed: int, skip: frozenset,
              counted: bool) -> dict[str, Any]:
        space = context.get("space", {})
        history = context.get("history", [])
        proposals = list(offered)
        for mech in self.order("propose"):
            if (mech.name, "propose") in skip:
                continue

            def check_propose(value: Any) -> None:
                if not isinstance(value, list) or not value or len(value) > MAX_PROPOSALS:
                    raise InvalidReturn(f"propose must return 1..{MAX_PROPOSALS} proposals")
                for p in value:
                    validate_proposal(p, space)

            ok, value = self._invoke(mech, "propose", [{**context, "proposals": proposals}],
                                     derive_seed(seed, mech.name, "propose"), check_propose, counted)
            if ok:
                proposals = value
        for mech in self.order("filter"):
            if (mech.name, "filter") in skip:
                continue
            current = proposals

            def check_filter(value: Any) -> None:
                if not isinstance(value, list) or not all(any(same(v, p) for p in current) for v in value):
                    raise InvalidReturn("filter must return a subset of its input")

            ok, value = self._invoke(mech, "filter", [proposals, history], 0, check_filter, counted)
            if ok and value:  # an empty result keeps the unfiltered list: something must be tried
                proposals = value
        for mech in [m for m in self.order("select") if (m.name, "select") not in skip][:1]:  # one selector decides
            options = proposals

            def check_select(value: Any) -> None:
                if not any(same(value, p) for p in options):
                    raise InvalidReturn("select must return one of its inputs")

            ok, value = self._invoke(mech, "select", [proposals, history], derive_seed(seed, mech.name, "select"),
                                     check_select, counted)
            if ok:
                return value
        return proposals[0]

    def _accept(self, outcome: dict[str, Any], history: list[dict[str, Any]], seed: int, skip: frozenset,
                counted: bool) -> tuple[bool | None, ActiveMechanism | None]:
        def check(value: Any) -> None:
            if not isinstance(value, bool):
                raise InvalidReturn("accept must return true or false")

        deciders = [m for m in self.order("accept") if (m.name, "accept") not in skip][:1]
        for mech in deciders:
            ok, value = self._invoke(mech, "accept", [outcome, history], derive_seed(seed, mech.name, "accept"),
                                     check, counted)
            if ok:
                if outcome.get(VETO_ONLY) and not outcome.get("default_keep"):
                    value = False  # where keeping needs evidence, a hook may refuse what the gate grants, never grant
                return value, mech
        return None, None

    # ------------------------------------------------------------- hooks (live: counted, effects measured)
    def guide(self, context: dict[str, Any]) -> dict[str, Any]:
        self.clear_cache()
        guided = self._guide(context, Skip(), True)
        for mech in self.order("guide"):
            if not same(guided_part(self._guide(context, Skip({(mech.name, "guide")}), False)), guided_part(guided)):
                self._changed(mech, "guide")
        return guided

    def pick(self, context: dict[str, Any], offered: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        """propose -> filter -> select over the proposer's ``offered`` proposals: the proposal to try."""
        self.clear_cache()
        chosen = self._pick(context, offered, seed, Skip(), True)
        for hook in PICK_HOOKS:
            for mech in self.order(hook):
                if not same(self._pick(context, offered, seed, Skip({(mech.name, hook)}), False), chosen):
                    self._changed(mech, hook)
        return chosen

    def accept(self, outcome: dict[str, Any], history: list[dict[str, Any]], seed: int) -> bool | None:
        """The deciding accept mechanism's verdict, or None to keep the default gate's."""
        self.clear_cache()
        verdict, mech = self._accept(outcome, history, seed, Skip(), True)
        if mech is not None:
            without, _ = self._accept(outcome, history, seed, Skip({(mech.name, "accept")}), False)
            default = bool(outcome.get("default_keep", False))
            if (verdict if verdict is not None else default) != (without if without is not None else default):
                self._changed(mech, "accept")
        return verdict

    # ------------------------------------------------------------- counts
    def take_delta(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Calls made since the last ``take_delta`` (stored per trial in the trace, so resume stays exact)."""
        delta = {}
        for key, s in self.stats.items():
            m = self._marks.get(key, HookStats())
            if (s.calls, s.changed) != (m.calls, m.changed):
                delta[key] = {"calls": s.calls - m.calls, "changed": s.changed - m.changed,
                              "errors": s.errors - m.errors, "seconds": s.seconds - m.seconds,
                              "last_error": s.last_error}
        self._marks = {k: HookStats(s.calls, s.changed, s.errors, s.seconds, s.last_error) for k, s in self.stats.items()}
        return delta


def replay_changes(hooks: HookRunner, candidate: str, decisions: Iterable[dict[str, Any]]) -> int:
    """How many recorded decisions the mechanism ``candidate`` would change: the dry run, at zero trial cost.

    Each decision is ``{"context": ..., "offered": [...], "seed": int, "accept": outcome-or-None}`` with the
    context's ``history`` and ``space`` filled in. Both arms are replayed through ``hooks`` (the incumbents
    plus the candidate): with the candidate's hooks on, and with them all switched off. Nothing is counted.
    """
    mech = next(m for m in hooks.mechanisms if m.name == candidate)
    off = Skip({(candidate, h) for h in mech.hooks})
    changed = 0
    for d in decisions:
        hooks.clear_cache()
        context = d["context"]
        guided_on, guided_off = hooks._guide(context, Skip(), False), hooks._guide(context, off, False)
        differs = not same(guided_part(guided_on), guided_part(guided_off))
        if not differs and d.get("offered"):
            differs = not same(hooks._pick(guided_on, d["offered"], d["seed"], Skip(), False),
                               hooks._pick(guided_on, d["offered"], d["seed"], off, False))
        if not differs and d.get("accept") is not None:
            default = bool(d["accept"].get("default_keep", False))
            on, _ = hooks._accept(d["accept"], context.get("history", []), d["seed"], Skip(), False)
            out, _ = hooks._accept(d["accept"], context.get("history", []), d["seed"], off, False)
            differs = (default if on is None else on) != (default if out is None else out)
        changed += differs
    hooks.clear_cache()
    return changed


def finite_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None
