"""HookRunner through the real sandbox: calls are not effects, a candidate takes precedence, the dry run."""
from __future__ import annotations

from pathlib import Path

from recur.core.hooks import ActiveMechanism, HookRunner, replay_changes
from recur.core.sandbox import Sandbox
from recur.mechanism_store.gate import defined_hooks

MECHS = Path(__file__).parent / "mechanisms"
SPACE = {"A": {"type": "float", "low": 0.0, "high": 1.0}}
OFFERED = [{"kind": "A", "payload": {"params": {"A": v}}, "rationale": ""} for v in (0.1, 0.2, 0.3)]
LAST = '''"""Select the last proposal."""
from recur.core.mechanism_api import Mechanism


class Last(Mechanism):
    """The last one."""

    def select(self, proposals, history, rng):
        return proposals[-1]
'''


def _mech(name: str, source: str, candidate: bool = False) -> ActiveMechanism:
    return ActiveMechanism(name, source, defined_hooks(source), candidate)


def _runner(*mechs: ActiveMechanism) -> tuple[HookRunner, Sandbox]:
    box = Sandbox({m.name: m.source for m in mechs})
    return HookRunner(list(mechs), box), box


def test_a_call_that_changes_nothing_is_counted_but_not_as_an_effect() -> None:
    first = _mech("first", (MECHS / "inert" / "first_select.py").read_text())
    hooks, box = _runner(first)
    with box:
        for seed in range(5):
            assert hooks.pick({"space": SPACE, "history": []}, OFFERED, seed) == OFFERED[0]
    assert hooks.stats[("first", "select")].calls == 5 and hooks.stats[("first", "select")].changed == 0


def test_a_changed_decision_is_counted_and_a_candidate_selector_decides() -> None:
    incumbent = _mech("first", (MECHS / "inert" / "first_select.py").read_text())
    cand = _mech("last", LAST, candidate=True)
    hooks, box = _runner(incumbent, cand)  # the candidate is listed last, yet it decides
    with box:
        assert hooks.pick({"space": SPACE, "history": []}, OFFERED, 0) == OFFERED[-1]
        delta = hooks.take_delta()
    assert delta[("last", "select")]["calls"] == 1 and delta[("last", "select")]["changed"] == 1
    assert ("first", "select") not in delta  # the incumbent selector was not asked


def test_the_dry_run_counts_decisions_a_candidate_would_change() -> None:
    cand = _mech("last", LAST, candidate=True)
    inert = _mech("same", (MECHS / "inert" / "first_select.py").read_text(), candidate=True)
    decisions = [{"context": {"space": SPACE, "history": []}, "offered": OFFERED, "seed": s, "accept": None}
                 for s in range(4)]
    single = [{**d, "offered": OFFERED[:1]} for d in decisions]  # one proposal: nothing to select
    for mech, offered, expected in [(cand, decisions, 4), (inert, decisions, 0), (cand, single, 0)]:
        hooks, box = _runner(mech)
        with box:
            assert replay_changes(hooks, mech.name, offered) == expected
        assert not hooks.stats  # replays are never counted as calls


def test_where_keeping_needs_evidence_an_accept_hook_may_veto_but_never_grant() -> None:
    """An outer level's keep is a promotion, a claim of evidence (docs/protocol.md): with ``veto_only`` set an
    accept mechanism that says keep to a rejected candidate changes nothing (and is not counted as an effect,
    live or in the dry run), while one that says discard to a passed candidate does. Without it (level 1's
    keep rule) a keep-everything accept overrides, the way simulated annealing keeps a worse edit."""
    keep = _mech("keep", (MECHS / "null" / "always_keep.py").read_text(), candidate=True)
    never = _mech("never", (MECHS / "null" / "never_keep.py").read_text(), candidate=True)
    refused, granted = ({"status": "ok", "default_keep": v, "veto_only": True} for v in (False, True))
    hooks, box = _runner(keep)
    with box:
        assert hooks.accept(refused, [], 0) is False and hooks.accept(granted, [], 0) is True
        assert hooks.accept({"status": "ok", "default_keep": False}, [], 0) is True  # level 1: a search move
        assert replay_changes(hooks, "keep", [{"context": {"history": []}, "seed": 0, "accept": refused}]) == 0
    assert hooks.stats[("keep", "accept")].calls == 3 and hooks.stats[("keep", "accept")].changed == 1
    hooks, box = _runner(never)
    with box:
        assert hooks.accept(granted, [], 0) is False and hooks.accept(refused, [], 0) is False
        assert replay_changes(hooks, "never", [{"context": {"history": []}, "seed": 0, "accept": granted}]) == 1
    assert hooks.stats[("never", "accept")].changed == 1
