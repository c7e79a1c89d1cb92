"""What the line carries between windows of an outer level, and the fresh-instance screens every run shares."""
from __future__ import annotations

import json
from pathlib import Path

from recur.core.records import Candidate, Decision, Outcome, Trial
from recur.levels.outer import LevelK, OuterLoop, OuterState, RaceSettings
from recur.levels.run import Run, RunOptions
from recur.levels.stack import promote_confirmed
from recur.levels.window import Level1, WindowResult, WindowStart
from recur.mechanism_store.builtin import render


def _runtime(ws: Path):
    run = Run(ws, RunOptions(model="scripted", task="synthetic", levels=3, max_trials=30, seed=0), resume=False)
    run.__enter__()
    run.rt = run.setup()
    return run


def test_a_mechanism_a_lower_window_confirmed_stays_active_on_the_line(tmp_path: Path) -> None:
    """Level 3's next window starts with the level-1 mechanisms level 2 confirmed in the last one, as it starts
    from the commit level 2 kept: both are where the line stands."""
    run = _runtime(tmp_path)
    try:
        rt = run.rt
        info = rt.store.add_candidate(1, "tpe", render("tpe", {}))
        rt.store.update(info.branch, "confirmed")
        base = run.baseline(rt)
        level2 = LevelK(rt, 2, Level1(rt), RaceSettings(child_len=3))
        level3 = LevelK(rt, 3, level2, RaceSettings(child_len=12), top=True)
        loop = OuterLoop(level3, OuterState(WindowStart(base.final.lineage, {1: [], 2: []})), None)
        window = Candidate("t-inc", 3, "incumbent", {"incumbent": True}, 1)
        outcome = Outcome("ok", 0.0, info={"incumbent": True, "lineage": base.final.lineage.to_json(), "trials": 0,
                                           "lower_active": {"1": [[info.name, ["propose"]]]}})
        loop.record(Trial(window, outcome, Decision(False, "incumbent window", {"status": "incumbent"})))
        active = loop.state.start.active
        assert [m.name for m in active[1]] == [info.name] and active[2] == []
        assert active[1][0].source == render("tpe", {})  # read back from the store, not trusted from the trace

        promote_confirmed(rt, WindowResult("x", None, None, "", 0, 0.0, final=loop.state.start))
        assert rt.store.info(info.name).status == "promoted"  # the top level writes main at the end of the run
    finally:
        run.__exit__(None, None, None)


def test_fresh_instance_screens_are_computed_once_per_machine(tmp_path: Path, monkeypatch) -> None:
    from recur.levels import screen as screen_module
    from recur.tasks.synthetic.task import SyntheticTask

    task = SyntheticTask()
    calls = []
    real = screen_module.simulated_gain

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(screen_module, "simulated_gain", counted)
    from recur.core.hooks import ActiveMechanism
    from recur.core.policy import ScriptedBackend
    from recur.core.sandbox import Sandbox
    from recur.mechanism_store.gate import defined_hooks

    source = render("categorical_sweep", {})
    mech = ActiveMechanism("categorical_sweep-x", source, defined_hooks(source))
    objectives = [(f"instance-{i}", "instance", f, s) for i, (f, s) in
                  enumerate(task.screen_instances(3, screen_module.INSTANCE_SEED))]
    settings = screen_module.ScreenSettings(seeds=3, horizon=8)
    verdicts = []

    def one_run() -> None:  # a run of its own: a fresh in-memory cache, the one disk cache
        sandbox = Sandbox({mech.name: source})
        try:
            make = screen_module.policy_maker(lambda: ScriptedBackend(3), sandbox, ScriptedBackend(3))
            shared = screen_module.SharedScreens(tmp_path, task, 3)
            verdicts.append(screen_module.screen(task.space(), objectives, make, [mech], [], settings, seed=len(verdicts),
                                                 shared=shared))
        finally:
            sandbox.close()

    one_run()
    one_run()
    assert len(calls) == 6  # 3 instances x 2 arms, computed by the first run; the second read them all
    assert verdicts[0]["diff"] == verdicts[1]["diff"]
    entries = sorted((tmp_path / "screen").glob("*.json"))
    assert len(entries) == 6
    entries[0].write_text("{damaged")
    one_run()
    assert len(calls) == 7 and verdicts[2]["diff"] == verdicts[0]["diff"]  # the damaged entry alone recomputed
    assert isinstance(json.loads(entries[0].read_text()), float)  # and rewritten
