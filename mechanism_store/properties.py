"""Property tests of a mechanism's hooks (Hypothesis), the second gate after the static policy.

``check_properties(caller, hooks)`` runs, for every hook, these properties over generated inputs
(``strategies.hook_inputs``):

* ``no_error``       the hook returns without raising;
* ``within_time``    each call takes at most ``time_limit`` seconds;
* ``valid_return``   the value has the contract's shape, checked as the level's HookRunner checks it:
                     ``guide`` a dict keeping every context key, ``guidance`` a list of str, ``frozen`` a
                     list of space names that leaves a parameter free; ``propose`` at most MAX_PROPOSALS
                     proposals (at least one when given some), each ``{"kind": str, "payload": {"params":
                     {...}}[, "rationale": str]}`` with every param in the space and valid for its spec
                     (``core.hooks.validate_proposal``); ``filter`` a sub-multiset of its input (compared as
                     JSON values); ``select`` one of its inputs; ``accept`` a bool; always JSON-serialisable;
* ``no_mutation``    the arguments are unchanged after the call (meaningful with an in-process caller; a
                     sandbox receives copies, so it passes there by construction);
* ``deterministic``  two calls with the same arguments and seed give the same value (the module-level
                     ``random`` is put in a different state before each call, so a hook that ignores its
                     ``rng`` fails; state kept on ``self`` fails with an in-process caller).

A property that could not be checked (overall ``budget_seconds`` spent, or the hook failed on the first
inputs so nothing else can be established) is reported as failed with a message starting "not checked".

A *caller* is ``caller(hook, args, seed) -> (ok, value, error, seconds)``: ``args`` are the hook's JSON
arguments without the rng; the caller appends ``random.Random(seed)`` for ``propose``/``select``/``accept``
(see ``strategies.RNG_HOOKS``). The lead's sandbox caller and ``in_process_caller(source)`` both fit.

All properties of a hook are checked together in one Hypothesis run (cheap when all pass); when a run fails on
a property, that property's shrunk counterexample is kept and the remaining properties are run again, until
a run passes - so every failing property gets its own counterexample.
Shrinking stops after ``shrink_seconds`` (from then on no call is made and Hypothesis finishes at once), so
a hook that times out cannot stall the gate. The counterexample reported is the last example that really
failed: Hypothesis' shrunk one when shrinking finished in time, else the smallest reached by then.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hyp_seed, settings
from hypothesis.errors import HypothesisWarning

from recur.core.mechanism_api import HOOKS, Mechanism

from .strategies import RNG_HOOKS, hook_inputs

try:  # the level's own proposal check, so the gate and the runner agree on what is valid
    from recur.core.hooks import MAX_PROPOSALS, validate_proposal as _validate_proposal
except ImportError:  # pragma: no cover - core.hooks is part of recur; this only guards partial checkouts
    MAX_PROPOSALS = 64

    def _validate_proposal(prop: Any, space: dict[str, Any]) -> None:
        for name, value in prop["payload"].get("params", {}).items():
            if name not in space:
                raise ValueError(f"proposal edits unknown parameter {name!r}")

PROPERTIES = ("no_error", "within_time", "valid_return", "no_mutation", "deterministic")
DEFAULT_TIME_LIMIT = 2.0
COUNTEREXAMPLE_CHARS = 50000

Caller = Callable[[str, list, int], "tuple[bool, Any, str | None, float]"]


@dataclass
class PropertyResult:
    """One (hook, property) verdict; ``counterexample`` is the shrunk failing arguments as JSON text."""

    hook: str
    property: str
    passed: bool
    counterexample: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "property": self.property,
            "passed": self.passed,
            "counterexample": self.counterexample,
            "message": self.message,
        }


class _PropertyFailed(AssertionError):
    def __init__(self, prop: str, message: str) -> None:
        super().__init__(f"{prop}: {message}")
        self.prop = prop
        self.message = message


class _NotJSON(ValueError):
    pass


class _Abort(Exception):
    """Stop a run whose hook fails on every input: the properties it checks cannot be established."""


FAILING_CALLS_TO_ABORT = 5


def _canon(value: Any) -> str:
    """Canonical JSON text of a value (NaN/inf allowed, as Python's json writes them); _NotJSON otherwise."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _NotJSON(f"not JSON-serialisable: {exc}") from None


def _loose(value: Any) -> str:
    try:
        return _canon(value)
    except _NotJSON:
        return repr(value)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _check_return(hook: str, args: list, value: Any) -> str | None:
    """None if ``value`` is a valid return of ``hook`` for ``args``, else what is wrong."""
    try:
        text = _canon(value)
    except _NotJSON as exc:
        return f"{hook} returned a value that is {exc}"
    if hook == "accept":
        return None if isinstance(value, bool) else f"accept must return a bool, got {type(value).__name__}: {_short(text)}"
    if hook == "guide":
        if not isinstance(value, dict):
            return f"guide must return a dict, got {type(value).__name__}"
        missing = [k for k in args[0] if k not in value]
        if missing:
            return f"guide dropped context key(s) {missing}"
        for key in ("frozen", "guidance"):
            if key in value and not (isinstance(value[key], list) and all(isinstance(x, str) for x in value[key])):
                return f"guide: context[{key!r}] must be a list of str, got {_short(_loose(value[key]))}"
        space = args[0].get("space") or {}
        frozen = value.get("frozen", [])
        unknown = [f for f in frozen if f not in space]
        if unknown:
            return f"guide: frozen names not in the space: {_short(_loose(unknown))}"
        if space and len(set(frozen)) >= len(space):
            return "guide froze every parameter of the space"
        return None
    if hook == "propose":
        if not isinstance(value, list):
            return f"propose must return a list, got {type(value).__name__}"
        if len(value) > MAX_PROPOSALS:
            return f"propose returned {len(value)} proposals, more than {MAX_PROPOSALS}"
        if args[0].get("proposals") and not value:
            return "propose returned no proposals although it was given some"
        space = args[0].get("space") or {}
        for i, prop in enumerate(value):
            problem = _proposal_problem(prop, space)
            if problem:
                return f"propose: item {i} is not a valid proposal ({problem}): {_short(_loose(prop))}"
        return None
    inputs = [_loose(p) for p in args[0]]
    if hook == "filter":
        if not isinstance(value, list):
            return f"filter must return a list, got {type(value).__name__}"
        pool: dict[str, int] = {}
        for key in inputs:
            pool[key] = pool.get(key, 0) + 1
        for i, item in enumerate(value):
            key = _loose(item)
            if pool.get(key, 0) <= 0:
                return f"filter returned item {i} that is not one of its inputs (or more copies than given): {_short(key)}"
            pool[key] -= 1
        return None
    if hook == "select":
        if _loose(value) not in inputs:
            return f"select returned something that is not one of its inputs: {_short(_loose(value))}"
        return None
    return None


def _proposal_problem(prop: Any, space: dict[str, Any]) -> str | None:
    """What makes ``prop`` an invalid proposal for ``space`` (the level's own check), or None."""
    if not isinstance(prop, dict):
        return "not a dict"
    if not isinstance(prop.get("kind"), str):
        return "kind is not a str"
    if "rationale" in prop and not isinstance(prop["rationale"], str):
        return "rationale is not a str"
    payload = prop.get("payload")
    if not isinstance(payload, dict):
        return "payload is not a dict"
    params = payload.get("params", {})
    if not isinstance(params, dict):
        return "payload.params is not a dict"
    if not all(isinstance(k, str) for k in params):
        return "payload.params has a non-str key"
    try:
        _validate_proposal(prop, space)
    except Exception as exc:  # InvalidReturn / EditError: unknown parameter, wrong type, out of range
        return str(exc)
    return None


def _safe_call(caller: Caller, hook: str, args: list, seed: int) -> tuple[bool, Any, str | None, float]:
    start = time.perf_counter()
    try:
        ok, value, error, seconds = caller(hook, args, seed)
    except Exception as exc:  # a broken caller counts against the hook, never kills the gate
        return False, None, f"caller raised {type(exc).__name__}: {exc}", time.perf_counter() - start
    return bool(ok), value, error, float(seconds)


def _check_example(caller: Caller, hook: str, args: list, call_seed: int, props: tuple[str, ...], time_limit: float) -> bool:
    """Raise _PropertyFailed for the first property of ``props`` that ``args`` falsifies; else whether the call succeeded."""
    before = _loose(args)
    call_args = copy.deepcopy(args)  # the hook may do anything to these; ``args`` itself stays pristine
    # The module-level ``random`` gets a different state before each of the two calls (Hypothesis would
    # otherwise reset it identically for every example), so a hook that ignores its ``rng`` is caught. A
    # sandbox worker re-seeds ``random`` per call itself; this only matters for in-process callers.
    salt = hashlib.sha1(before.encode("utf-8", "surrogatepass")).hexdigest()
    random.seed(f"{salt}-first")
    ok, value, error, seconds = _safe_call(caller, hook, call_args, call_seed)
    if "no_error" in props and not ok:
        raise _PropertyFailed("no_error", f"{hook} raised: {_short(str(error), 1000)}")
    if "within_time" in props and seconds > time_limit:
        raise _PropertyFailed("within_time", f"{hook} took {seconds:.3f} s > {time_limit:.3f} s")
    if not ok:
        return False  # the other properties say nothing about a call that failed
    if "valid_return" in props:
        problem = _check_return(hook, args, value)
        if problem:
            raise _PropertyFailed("valid_return", problem)
    if "no_mutation" in props and _loose(call_args) != before:
        raise _PropertyFailed("no_mutation", f"{hook} mutated its arguments")
    if "deterministic" in props:
        random.seed(f"{salt}-second")
        ok2, value2, error2, _ = _safe_call(caller, hook, copy.deepcopy(args), call_seed)
        if not ok2:
            raise _PropertyFailed("deterministic", f"second call with the same seed raised: {_short(str(error2))}")
        if _loose(value) != _loose(value2):
            raise _PropertyFailed(
                "deterministic",
                f"same arguments and seed gave different values: {_short(_loose(value))} vs {_short(_loose(value2))}",
            )
    return True


def _run(
    caller: Caller,
    hook: str,
    props: tuple[str, ...],
    max_examples: int,
    seed: int,
    time_limit: float,
    shrink_seconds: float,
    deadline: float | None = None,
) -> tuple[bool, str | None, str | None, str]:
    """One Hypothesis run of ``props`` on ``hook``: (passed, failing property, counterexample, message)."""
    state: dict[str, Any] = {
        "last": None, "prop": None, "message": None, "first_failure": None, "checked": 0, "skipped": 0,
        "failed_calls": 0, "good_calls": 0, "aborted": False,
    }

    def body(args: list) -> None:
        if state["aborted"]:
            raise _Abort()  # after an abort every input fails at once, so Hypothesis stops quickly
        now = time.monotonic()
        if state["first_failure"] is None and deadline is not None and now > deadline:
            state["skipped"] += 1  # overall budget spent before any failure: stop calling the hook
            return
        failed: _PropertyFailed | None = None
        if state["first_failure"] is not None and (
            now - state["first_failure"] > shrink_seconds or (deadline is not None and now > deadline)
        ):
            # Shrinking budget spent. Hypothesis' shrinker would go on for up to 5 minutes on inputs that
            # pass; instead every input now "fails" without a call, so it races to its smallest input and
            # stops. The counterexample reported stays the last *real* failure (``state["last"]``).
            failed = _PropertyFailed(state["prop"], state["message"])
        else:
            text = _loose(args)
            state["checked"] += 1
            try:
                if _check_example(caller, hook, args, seed, props, time_limit):
                    state["good_calls"] += 1
                else:
                    state["failed_calls"] += 1
                    if state["good_calls"] == 0 and state["failed_calls"] >= FAILING_CALLS_TO_ABORT:
                        state["aborted"] = True
            except _PropertyFailed as failure:
                if state["first_failure"] is None:
                    state["first_failure"] = time.monotonic()
                state.update(last=text, prop=failure.prop, message=failure.message)
                failed = _PropertyFailed(failure.prop, failure.message)
        if state["aborted"]:
            raise _Abort()
        if failed is not None:
            # One raise site, outside any except block: Hypothesis tells bugs apart by where they were
            # raised, and real and budget-spent failures must look like the same bug to the shrinker.
            raise failed

    if deadline is not None and time.monotonic() > deadline:
        return False, None, None, "not checked: the time budget was spent before this run"
    test = given(hook_inputs(hook))(body)
    test = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )(test)
    test = hyp_seed(seed)(test)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HypothesisWarning)  # "overly large repr" of long histories
            test()
    except Exception as exc:  # _PropertyFailed, or Hypothesis' Flaky* when a failure does not reproduce
        if state["aborted"]:
            return False, None, None, (
                f"not checked: {hook} failed on the first {state['failed_calls']} inputs it was given (see no_error)"
            )
        if state["last"] is None:
            return False, None, None, f"property run failed outside the hook: {type(exc).__name__}: {_short(str(exc))}"
        message = state["message"] or str(exc)
        if not isinstance(exc, _PropertyFailed):
            message += f" (failure did not reproduce on replay: {type(exc).__name__})"
        counterexample = state["last"]
        if len(counterexample) > COUNTEREXAMPLE_CHARS:
            counterexample = counterexample[:COUNTEREXAMPLE_CHARS] + f"... ({len(state['last'])} chars)"
        return False, state["prop"], counterexample, message
    if state["skipped"]:
        if not state["checked"]:
            return False, None, None, "not checked: the time budget was spent before this run"
        return True, None, None, f"ok on {state['checked']} examples (time budget spent; {state['skipped']} not run)"
    return True, None, None, "ok"


def check_properties(
    caller: Caller,
    hooks: list[str],
    max_examples: int = 50,
    seed: int = 0,
    time_limit: float = DEFAULT_TIME_LIMIT,
    shrink_seconds: float = 10.0,
    budget_seconds: float | None = None,
) -> list[PropertyResult]:
    """Check every property of ``PROPERTIES`` for each hook in ``hooks``; one result per (hook, property).

    ``time_limit`` is the per-call limit of ``within_time``; ``shrink_seconds`` caps shrinking per failure;
    ``budget_seconds`` (None = no cap) caps the whole check: once spent, runs stop calling the hook and a
    property that was not checked at all is reported as failed ("not checked").
    """
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    results: list[PropertyResult] = []
    for hook in hooks:
        if hook not in HOOKS:
            results.append(PropertyResult(hook, "known_hook", False, None, f"unknown hook; hooks are {', '.join(HOOKS)}"))
            continue
        # Peel failing properties off one run at a time: every run checks all the properties not yet
        # known to fail, so a clean hook costs one run and each failing property gets its own shrunk
        # counterexample (a property failing only where an earlier one already failed is still found).
        verdicts: dict[str, PropertyResult] = {}
        remaining = list(PROPERTIES)
        while remaining:
            passed, prop, example, message = _run(
                caller, hook, tuple(remaining), max_examples, seed, time_limit, shrink_seconds, deadline
            )
            if passed or prop is None:
                for p in remaining:
                    verdicts[p] = PropertyResult(hook, p, passed, None, message)
                break
            verdicts[prop] = PropertyResult(hook, prop, False, example, message)
            remaining.remove(prop)
        results.extend(verdicts[p] for p in PROPERTIES)
    return results


def failures(results: list[PropertyResult]) -> list[PropertyResult]:
    return [r for r in results if not r.passed]


def mechanism_class(namespace: dict[str, Any], module_name: str | None = None) -> type:
    """The single Mechanism subclass defined in ``namespace`` (ValueError if there is not exactly one)."""
    found = [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, Mechanism) and v is not Mechanism
        and (module_name is None or v.__module__ == module_name)
    ]
    if len(found) != 1:
        raise ValueError(f"expected exactly one Mechanism subclass, found {len(found)}: {[c.__name__ for c in found]}")
    return found[0]


_COUNTER = [0]


def load_mechanism(source: str, name: str = "mechanism") -> type:
    """Execute ``source`` as a fresh module (registered in sys.modules, as dataclasses needs) and return its class.

    For tests and trusted built-ins only: this runs the code in this process, with no sandbox.
    """
    _COUNTER[0] += 1
    module_name = f"recur_mechanism_{name}_{_COUNTER[0]}"
    module = types.ModuleType(module_name)
    module.__file__ = f"<{name}>"
    sys.modules[module_name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return mechanism_class(module.__dict__, module_name)


def in_process_caller(source: str, *, fresh_instance: bool = False) -> Caller:
    """A caller that runs the hooks of ``source`` in this process on the very argument objects it is given.

    One instance serves every call by default (like a long-lived sandbox worker), so a hook that keeps state
    on ``self`` shows up as non-deterministic; ``fresh_instance=True`` builds one per call. Not a sandbox.
    """
    cls = load_mechanism(source)
    shared = cls()

    def caller(hook: str, args: list, seed: int) -> tuple[bool, Any, str | None, float]:
        instance = cls() if fresh_instance else shared
        call_args = list(args)
        if hook in RNG_HOOKS:
            call_args.append(random.Random(seed))
        start = time.perf_counter()
        try:
            value = getattr(instance, hook)(*call_args)
        except Exception as exc:
            return False, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
        return True, value, None, time.perf_counter() - start

    return caller


__all__ = [
    "DEFAULT_TIME_LIMIT",
    "PROPERTIES",
    "PropertyResult",
    "check_properties",
    "failures",
    "in_process_caller",
    "load_mechanism",
    "mechanism_class",
]
