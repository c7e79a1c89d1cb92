"""The screen: simulated level 1 (same context, payload and keep rule) on a surrogate and fresh instances.

Real parts: real synthetic surfaces, a real scikit-learn forest, mechanisms run in the real sandbox.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from recur.core.edits import read_constants
from recur.core.hooks import ActiveMechanism
from recur.core.policy import ScriptedBackend
from recur.core.sandbox import Sandbox
from recur.evidence.ablate import best_so_far
from recur.levels.screen import ScreenSettings, fit_surrogate, policy_maker, screen, screen_reason, unit_row
from recur.levels.simulate import run_level1
from recur.mechanism_store.builtin import render
from recur.mechanism_store.gate import defined_hooks
from recur.tasks.synthetic.task import SyntheticTask

TASK = SyntheticTask()
SPACE = TASK.space()

# proposes the top of every numeric range at once: on the synthetic surface that diverges or scores badly
HARMFUL = '''
from recur.core.mechanism_api import Mechanism, free_axes


class Harmful(Mechanism):
    def propose(self, context, rng):
        proposals = list(context.get("proposals") or [])
        params = {}
        for name, ax in free_axes(context).items():
            if ax[0] == "float":
                params[name] = ax[2]
        if not params:
            return proposals
        return [{"kind": "harmful", "payload": {"params": params}, "rationale": "every number at its maximum"}] + proposals
'''


def _mechanism(name: str, source: str) -> ActiveMechanism:
    return ActiveMechanism(name, source, defined_hooks(source))


def _screen(candidate: list[ActiveMechanism], incumbent: list[ActiveMechanism], seed: int) -> dict:
    sources = {m.name: m.source for m in candidate + incumbent}
    sandbox = Sandbox(sources) if sources else None
    try:
        make = policy_maker(lambda: ScriptedBackend(3), sandbox, ScriptedBackend(3))
        objectives = [(f"instance-{i}", "instance", f, s) for i, (f, s) in enumerate(TASK.screen_instances(6, seed))]
        return screen(SPACE, objectives, make, candidate, incumbent, ScreenSettings(seeds=6, horizon=20), seed)
    finally:
        if sandbox is not None:
            sandbox.close()


def test_screen_instances_are_fresh_and_start_from_the_default_config() -> None:
    start = read_constants((Path(__file__).parents[1] / "tasks" / "synthetic" / "config.py").read_text())
    one = TASK.screen_instances(4, seed=1)
    two = TASK.screen_instances(4, seed=2)
    assert len(one) == 4 and all(s == {k: v for k, v in start.items() if k in SPACE} for _, s in one)
    from recur.tasks.synthetic.surface import Surface

    shapes = {repr(f.basins) for f, _ in one + two}
    assert len(shapes) == 8  # a fresh instance per seed and index
    assert not shapes & {repr(Surface(s).basins) for s in range(20)}  # never a run's own (a run's is its seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_identical_copy_of_the_incumbent_is_a_tie_the_screen_cannot_judge(seed: int) -> None:
    """The null case: the same mechanism (the store names a mechanism by its level, parent and source, so a copy
    has the same name and the same hook seeds) on both arms gives the same runs and a zero difference in
    every one. That is no evidence of harm, so the screen passes it on as uninformative; what stops a copy
    before it spends a trial is the dry run (it changes no decision), and in a race the gate's null rate."""
    tpe = render("tpe", {})
    out = _screen([_mechanism("tpe-same", tpe)], [_mechanism("tpe-same", tpe)], seed)
    assert out["runs"] == 6 and out["diff"] == 0.0 and not out["informative"] and out["passed"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_harmful_mechanism_is_screened_out(seed: int) -> None:
    out = _screen([_mechanism("harmful", HARMFUL)], [], seed)
    assert out["diff"] < 0 and out["informative"] and not out["passed"]


def test_with_nothing_to_simulate_a_candidate_goes_on_unscreened() -> None:
    """Early in a run on a task without cheap instances (gpt_pretrain) the surrogate has too few trials to fit:
    the screen then has no evidence either way and must not throw the candidate away unseen (README's first
    command screened out its first level-2 candidates that way, "over 0 simulated runs")."""
    make = policy_maker(lambda: ScriptedBackend(3), None, ScriptedBackend(3))
    out = screen(SPACE, [], make, [_mechanism("harmful", HARMFUL)], [], ScreenSettings(seeds=6, horizon=20), 0)
    assert out["runs"] == 0 and not out["informative"] and out["passed"]
    assert screen_reason(out) == "screen: uninformative (too few level-1 trials to simulate yet), so not screened"


def test_simulated_level1_keeps_only_improvements_beyond_the_threshold() -> None:
    """The keep rule is level 1's: the best after each trial moves only on a trial that beat it by the threshold."""
    (surface, start), = TASK.screen_instances(1, seed=5)
    policy = policy_maker(lambda: ScriptedBackend(3), None, ScriptedBackend(3))([])
    run = run_level1(surface, SPACE, start, policy, 40, seed=5, threshold=0.01)
    assert len(run.metrics) == len(run.best_after) == 40
    previous = run.start
    for metric, best in zip(run.metrics, run.best_after):
        if best != previous:
            assert metric == best and metric < previous - 0.01
        previous = best
    assert run.best_after[-1] < run.start  # 40 scripted trials improve on the default on this instance


def test_surrogate_needs_enough_points_and_orders_a_monotone_response() -> None:
    rng = random.Random(0)
    low, high = SPACE["LEARNING_RATE"]["low"], SPACE["LEARNING_RATE"]["high"]
    ((_, base),) = TASK.screen_instances(1, seed=0)
    points = []
    for _ in range(40):
        p = dict(base)
        p["LEARNING_RATE"] = low + rng.random() * (high - low)
        points.append((p, 10.0 * (p["LEARNING_RATE"] - low) / (high - low)))  # metric rises with the rate
    assert fit_surrogate(points[:5], SPACE, 0.0, seed=0) is None
    model = fit_surrogate(points, SPACE, 0.0, seed=0)
    assert model is not None
    small, large = dict(base, LEARNING_RATE=low), dict(base, LEARNING_RATE=high)
    assert model(small, 1) < model(large, 1)
    assert len(unit_row(small, SPACE)) == len(unit_row(large, SPACE))


def test_best_so_far_counts_charged_trials_only() -> None:
    rows = [{"status": "ok", "metric": 3.0, "outcome": {"cost": {"trials": 1}}},
            {"status": "ok", "metric": 2.5, "outcome": {"cost": {"trials": 0}}},  # reused: no budget, no point
            {"status": "crash", "metric": None, "outcome": {"cost": {"trials": 1}}},
            {"status": "ok", "metric": 2.0, "outcome": {"cost": {"trials": 1}}},
            {"status": "running", "metric": None, "outcome": None}]
    assert best_so_far(rows, 2.8, maximize=False) == [0.0, 0.0, pytest.approx(-0.8)]
    assert best_so_far(rows, None, maximize=False) == []
