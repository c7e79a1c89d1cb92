"""The property gate (mechanism_store/properties.py) and the strategies behind it.

A correct mechanism passes every property; deliberately broken ones are reported as failing the right property,
each with a (shrunk) counterexample.
"""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings

from recur.mechanism_store.properties import (
    PROPERTIES,
    PropertyResult,
    check_properties,
    failures,
    in_process_caller,
    load_mechanism,
)
from recur.mechanism_store.strategies import (
    FAILED,
    contexts,
    histories,
    hook_inputs,
    outcomes,
    proposals,
    spaces,
)

FAST = dict(max_examples=25, seed=0, shrink_seconds=5.0)
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "depth": {"type": "int", "low": 2, "high": 12, "log": False},
    "act": {"type": "choice", "choices": ["relu", "gelu"]},
}

CORRECT = '''
"""Pass-through on every hook, written carefully."""
from recur.core.mechanism_api import Mechanism


class AllHooks(Mechanism):
    """Defines all five hooks, each a valid no-op (select uses the rng)."""

    def guide(self, context):
        out = dict(context)
        out["guidance"] = list(context.get("guidance") or []) + ["be bold"]
        return out

    def propose(self, context, rng):
        return list(context.get("proposals") or [])

    def filter(self, proposals, history):
        return [p for p in proposals if len(history) % 2 == 0 or p is not proposals[0]]

    def select(self, proposals, history, rng):
        return proposals[rng.randrange(len(proposals))]

    def accept(self, outcome, history, rng):
        return bool(outcome.get("default_keep")) or rng.random() < 0.1
'''


def _by_property(results: list[PropertyResult], hook: str) -> dict[str, PropertyResult]:
    return {r.property: r for r in results if r.hook == hook}


def _mechanism(body: str) -> str:
    return (
        "import random\n"
        "from recur.core.mechanism_api import Mechanism\n\n\n"
        "class Broken(Mechanism):\n"
        '    """Deliberately broken."""\n\n' + body
    )


# ---------------------------------------------------------------------------------------------- passing


def test_correct_mechanism_passes_every_property_of_every_hook():
    hooks = ["guide", "propose", "filter", "select", "accept"]
    results = check_properties(in_process_caller(CORRECT), hooks, **FAST)
    assert len(results) == len(hooks) * len(PROPERTIES)
    assert {(r.hook, r.property) for r in results} == {(h, p) for h in hooks for p in PROPERTIES}
    assert failures(results) == [], [r.to_dict() for r in failures(results)]
    assert all(r.counterexample is None and r.message == "ok" for r in results)


def test_default_mechanism_passes():
    source = _mechanism("    pass\n")
    assert failures(check_properties(in_process_caller(source), ["filter", "select", "accept"], **FAST)) == []


def test_unknown_hook_is_reported_not_raised():
    results = check_properties(in_process_caller(CORRECT), ["mutate"], **FAST)
    assert [(r.hook, r.property, r.passed) for r in results] == [("mutate", "known_hook", False)]


# ---------------------------------------------------------------------------------------------- failing


def _only_failure(results: list[PropertyResult], hook: str, prop: str) -> PropertyResult:
    by = _by_property(results, hook)
    assert not by[prop].passed, by[prop]
    assert by[prop].counterexample, "a failing property must carry its counterexample"
    assert by[prop].counterexample.startswith("[")  # the JSON argument list
    return by[prop]


def test_select_returning_a_new_dict_fails_valid_return():
    source = _mechanism(
        "    def select(self, proposals, history, rng):\n"
        "        return {'kind': 'new', 'payload': {'params': {}}, 'rationale': 'made up'}\n"
    )
    results = check_properties(in_process_caller(source), ["select"], **FAST)
    failure = _only_failure(results, "select", "valid_return")
    assert "not one of its inputs" in failure.message
    args = json.loads(failure.counterexample)
    assert len(args[0]) == 1 and args[1] == []  # shrunk: one proposal, empty history
    assert _by_property(results, "select")["no_error"].passed
    assert _by_property(results, "select")["deterministic"].passed


def test_filter_adding_an_element_fails_valid_return():
    source = _mechanism(
        "    def filter(self, proposals, history):\n"
        "        return list(proposals) + [{'kind': 'extra', 'payload': {'params': {}}, 'rationale': ''}]\n"
    )
    failure = _only_failure(check_properties(in_process_caller(source), ["filter"], **FAST), "filter", "valid_return")
    assert "not one of its inputs" in failure.message
    assert json.loads(failure.counterexample) == [[], []]  # the smallest input shows it: nothing in, one out


def test_filter_duplicating_an_element_fails_valid_return():
    source = _mechanism(
        "    def filter(self, proposals, history):\n"
        "        return list(proposals) + list(proposals[:1])\n"
    )
    _only_failure(check_properties(in_process_caller(source), ["filter"], **FAST), "filter", "valid_return")


def test_module_level_random_is_non_deterministic():
    source = _mechanism(
        "    def select(self, proposals, history, rng):\n"
        "        return proposals[int(random.random() * len(proposals))]\n"
        "    def accept(self, outcome, history, rng):\n"
        "        return random.random() < 0.5\n"
    )
    results = check_properties(in_process_caller(source), ["select", "accept"], **FAST)
    _only_failure(results, "accept", "deterministic")
    _only_failure(results, "select", "deterministic")
    assert _by_property(results, "accept")["valid_return"].passed


def test_state_kept_on_self_is_non_deterministic():
    source = _mechanism(
        "    def accept(self, outcome, history, rng):\n"
        "        self.calls = getattr(self, 'calls', 0) + 1\n"
        "        return self.calls % 2 == 0\n"
    )
    _only_failure(check_properties(in_process_caller(source), ["accept"], **FAST), "accept", "deterministic")


def test_mutating_the_input_fails_no_mutation():
    source = _mechanism(
        "    def guide(self, context):\n"
        "        context['guidance'].append('mutated in place')\n"
        "        return context\n"
        "    def filter(self, proposals, history):\n"
        "        history.clear()\n"
        "        return list(proposals)\n"
    )
    results = check_properties(in_process_caller(source), ["guide", "filter"], **FAST)
    _only_failure(results, "guide", "no_mutation")
    assert _by_property(results, "guide")["valid_return"].passed
    failure = _only_failure(results, "filter", "no_mutation")
    assert json.loads(failure.counterexample)[1], "the shrunk example needs a non-empty history to show the mutation"


def test_exception_fails_no_error_with_shrunk_counterexample():
    source = _mechanism(
        "    def accept(self, outcome, history, rng):\n"
        "        return history[-1]['kept']\n"
    )
    failure = _only_failure(check_properties(in_process_caller(source), ["accept"], **FAST), "accept", "no_error")
    assert "IndexError" in failure.message
    assert json.loads(failure.counterexample)[1] == []


def test_wrong_return_types_fail_valid_return():
    source = _mechanism(
        "    def accept(self, outcome, history, rng):\n"
        "        return 1\n"
        "    def guide(self, context):\n"
        "        return {'frozen': list(context.get('space') or {}), 'guidance': []}\n"
    )
    results = check_properties(in_process_caller(source), ["accept", "guide"], **FAST)
    assert "bool" in _only_failure(results, "accept", "valid_return").message
    _only_failure(results, "guide", "valid_return")


def test_propose_outside_the_space_fails_valid_return():
    source = _mechanism(
        "    def propose(self, context, rng):\n"
        "        out = list(context.get('proposals') or [])\n"
        "        for name, spec in sorted((context.get('space') or {}).items()):\n"
        "            if spec.get('type') == 'float':\n"
        "                out.append({'kind': name, 'payload': {'params': {name: spec['high'] * 2 + 1}}, 'rationale': ''})\n"
        "        return out\n"
    )
    failure = _only_failure(check_properties(in_process_caller(source), ["propose"], **FAST), "propose", "valid_return")
    assert "outside" in failure.message


def test_slow_hook_fails_within_time():
    source = _mechanism(
        "    def filter(self, proposals, history):\n"
        "        total = 0\n"
        "        if len(history) >= 50:\n"
        "            for i in range(300000):\n"
        "                total += i\n"
        "        return list(proposals)\n"
    )
    results = check_properties(in_process_caller(source), ["filter"], max_examples=30, time_limit=0.005, shrink_seconds=2.0)
    failure = _only_failure(results, "filter", "within_time")
    assert "took" in failure.message
    assert failure.counterexample.count('"status"') >= 50  # only a long history makes it slow
    assert _by_property(results, "filter")["no_error"].passed
    # with no time to shrink, the counterexample is still one that really failed
    unshrunk = check_properties(in_process_caller(source), ["filter"], max_examples=30, time_limit=0.005, shrink_seconds=0.0)
    assert _only_failure(unshrunk, "filter", "within_time").counterexample.count('"status"') >= 50


def test_budget_caps_the_whole_check():
    results = check_properties(in_process_caller(CORRECT), ["accept", "filter"], max_examples=25, budget_seconds=0.0)
    assert all(not r.passed and r.message.startswith("not checked") for r in results)


def test_caller_that_raises_is_a_hook_failure_not_a_crash():
    def caller(hook, args, seed):
        raise RuntimeError("sandbox died")

    results = check_properties(caller, ["accept"], max_examples=5, shrink_seconds=1.0)
    assert not _by_property(results, "accept")["no_error"].passed
    assert "sandbox died" in _by_property(results, "accept")["no_error"].message


def test_in_process_caller_appends_rng_only_for_rng_hooks():
    caller = in_process_caller(CORRECT)
    ok, value, error, seconds = caller("accept", [{"default_keep": True}, []], 3)
    assert ok and value is True and error is None and seconds >= 0
    ok, value, _, _ = caller("filter", [[], []], 3)
    assert ok and value == []
    ok, _, error, _ = caller("select", [[], []], 3)
    assert not ok and ("ValueError" in error or "IndexError" in error)


def test_load_mechanism_needs_exactly_one_subclass():
    with pytest.raises(ValueError):
        load_mechanism("from recur.core.mechanism_api import Mechanism\n")
    two = CORRECT + "\n\nclass Second(Mechanism):\n    '''x'''\n"
    with pytest.raises(ValueError):
        load_mechanism(two)


# ---------------------------------------------------------------------------------------------- strategies

def _sample(strategy, n: int = 150) -> list:
    seen = []

    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        seen.append(value)

    collect()
    return seen


def test_histories_reach_every_awkward_shape():
    samples = _sample(histories(SPACE))
    shapes = {
        "empty": lambda h: h == [],
        "long": lambda h: len(h) >= 100,
        "nan": lambda h: any(isinstance(r["metric"], float) and math.isnan(r["metric"]) for r in h),
        "inf": lambda h: any(r["metric"] in (math.inf, -math.inf) for r in h),
        "none-ok": lambda h: any(r["metric"] is None and r["status"] == "ok" for r in h),
        "duplicate-ids": lambda h: len({r["id"] for r in h}) < len(h),
        "all-failed": lambda h: len(h) > 3 and all(r["status"] in FAILED for r in h),
        "baseline": lambda h: any("baseline" in r["payload"] for r in h),
        "unicode-kind": lambda h: any(not r["kind"].isascii() for r in h),
        "unicode-payload": lambda h: any(not json.dumps(r["payload"], ensure_ascii=False).isascii() for r in h),
    }
    missing = [name for name, pred in shapes.items() if not any(pred(h) for h in samples)]
    assert not missing, f"history shapes never generated: {missing}"


def test_spaces_reach_edge_cases():
    samples = _sample(spaces())
    shapes = {
        "empty": lambda s: s == {},
        "degenerate": lambda s: any(v["type"] in ("float", "int") and v["low"] == v["high"] for v in s.values()),
        "log": lambda s: any(v.get("log") for v in s.values()),
        "all-types": lambda s: {v["type"] for v in s.values()} >= {"float", "int", "choice"},
        "bool": lambda s: any(v["type"] == "bool" for v in s.values()),
        "unicode-name": lambda s: any(not k.isascii() for k in s),
    }
    missing = [name for name, pred in shapes.items() if not any(pred(s) for s in samples)]
    assert not missing, f"space shapes never generated: {missing}"


@settings(max_examples=60, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(contexts())
def test_contexts_keep_the_levels_guarantees(context):
    from recur.core.edits import coerce

    space = context["space"]
    assert set(context["frozen"]) <= set(space)
    assert not space or len(context["frozen"]) < len(space)
    for p in context["proposals"]:
        params = p["payload"]["params"]
        assert not set(params) & set(context["frozen"])
        for name, value in params.items():
            coerce(name, value, space[name])
    for name, value in context["incumbent"].items():
        coerce(name, value, space[name])
    json.dumps(context)


@settings(max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(hook_inputs("select"))
def test_select_inputs_are_non_empty_and_json(args):
    proposals_in, history = args
    assert proposals_in
    json.loads(json.dumps(args))  # NaN/inf allowed as Python floats: json writes NaN/Infinity


@settings(max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(outcomes())
def test_outcomes_have_the_contract_keys(outcome):
    assert {"metric", "status", "best_metric", "incumbent_metric", "default_keep", "maximize", "step"} <= set(outcome)
    assert isinstance(outcome["default_keep"], bool) and isinstance(outcome["maximize"], bool)


def test_proposals_strategy_is_valid_for_its_space():
    from recur.core.hooks import validate_proposal

    @settings(max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(proposals(SPACE))
    def check(ps):
        for p in ps:
            validate_proposal(p, SPACE)
            assert isinstance(p["rationale"], str)

    check()
