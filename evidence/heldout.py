"""Held-out re-evaluation of a promoted mechanism: the same race that promoted it, on trial seeds it was never
scored on (and, for transfer, on another task).

A gain that only shows on the seeds used to select a mechanism is selection noise; the held-out score is what
``recur ablate`` reports next to the promotion score. It runs through the level's own evaluate (dry run,
race), from the run's best point but at level-1 trial indices far beyond the run's, so every seed is new.
"""
from __future__ import annotations

from dataclasses import replace

from typing import Any

from recur.core.budget import Budget
from recur.core.loop import derive_seed, run_relative
from recur.core.records import Candidate
from recur.levels.outer import MIN_DECISIONS, OuterLoop, OuterState, recorded_decisions
from recur.levels.runtime import Runtime
from recur.levels.window import Lineage, WindowStart

HELDOUT_INDEX = 1_000_000  # level-1 trial indices from here on are never used by a run: fresh seeds


def scope_seed(rt: Runtime, scope: str) -> int:
    """The seed a check's ``scope`` gives, the same in any workspace (without the run id, a timestamp)."""
    return derive_seed(rt.seed, run_relative(scope, rt.run_id))


def promoted_branches(rt: Runtime) -> list[str]:
    """Branches this workspace's runs promoted (not ``applied`` by hand or by ``--apply``)."""
    return [m.branch for m in rt.store.list(status="promoted")]


def heldout_lineage(rt: Runtime, sha: str, metric: float | None, scope: str) -> Lineage:
    """A lineage at the run's best point whose trial indices (so seeds) were never used, with the run's
    level-1 trials as history (the dry run replays their decisions)."""
    ids = [t["id"] for t in rt.trace.trials(rt.run_id, level=1) if t["status"] != "running"
           and "/heldout/" not in t["scope"] and "/transfer/" not in t["scope"]]
    index = HELDOUT_INDEX + scope_seed(rt, scope) % HELDOUT_INDEX
    return Lineage(sha, metric, sha, index, {1: tuple(ids)})


def heldout_evaluate(rt: Runtime, opts: Any, branch: str, start: WindowStart, scope: str,
                     charge: bool = False, screen: bool = False) -> dict[str, Any]:
    """Judge ``branch`` (a level-k mechanism) exactly as level k+1 judges a candidate (dry run, race, held-out
    pairs), from ``start`` (for a held-out score its lineage holds fresh indices: ``heldout_lineage``).
    ``start.active`` may include the mechanism itself: it is taken out. ``charge``: count the trials against
    the run's budget (``recur mech eval``) instead of a separate one (held-out checks). ``screen``: screen
    before racing, as a new candidate is (``recur mech eval``); a held-out or transfer check of a mechanism that
    already won its race goes straight to real trials."""
    from recur.levels.stack import build

    info = rt.store.info(branch)
    k = info.level
    source = rt.store.source(info.branch)
    rt.source_cache[info.name] = source
    evaluator = build(rt, k + 1, opts, top=0)  # top=0: no level writes main from here
    active = {lv: [m for m in ms if m.name.rsplit("-", 1)[0] != info.slug] for lv, ms in start.active.items() if lv <= k}
    state = OuterState(WindowStart(start.lineage, active))
    race = evaluator.race if screen else replace(evaluator.race, screen=None)
    loop = OuterLoop(replace(evaluator, race=race, top=False, extra=[]), state, None)
    saved = rt.budget
    if not charge:
        rt.budget = Budget()  # held-out trials are extra: they never eat the run's budget
    before = dict(rt.budget.used)
    warm_trials = 0.0
    try:
        # windows of the level below until it has made as many decisions as a run's level needs before its
        # first candidate: on fewer, a model-based mechanism (gp_ei needs 6 points) changes nothing and a
        # transfer to a fresh task would be judged inactive before it had anything to model
        for n in range(MIN_DECISIONS):
            if len(recorded_decisions(rt, state.start.lineage, k, limit=MIN_DECISIONS)) >= MIN_DECISIONS:
                break
            warm = evaluator.child.run_window(f"{scope}/warmup" + (f"{n}" if n else ""), state.start,
                                              evaluator.race.child_len)
            assert warm.final is not None
            state.start = WindowStart(warm.final.lineage, active)
        warm_trials = rt.budget.used["trials"] - before["trials"]
        before = dict(rt.budget.used)
        candidate = candidate_for(rt, info, source, scope, k)
        outcome = loop.evaluate(candidate, rt.budget)
        decision = loop.accept(candidate, outcome, [])
    finally:
        used = {u: rt.budget.used[u] - before.get(u, 0.0) for u in rt.budget.used}
        rt.budget = saved
    verdict = "promoted" if decision.keep else (outcome.status if outcome.status in ("unsafe", "inactive", "unraced", "screened", "budget") else "rejected")
    return {"mechanism": info.name, "level": k, "score": outcome.metric, "status": outcome.status,
            "verdict": verdict, "reason": decision.reason, "ci": decision.info.get("ci"),
            "confirm": outcome.info.get("confirm", []), "dry_run": outcome.info.get("dry_run"),
            "race": outcome.info.get("race"), "pairs": outcome.info.get("pairs", []),
            "hook_calls": outcome.info.get("hook_calls", {}), "hook_effects": outcome.info.get("hook_effects", {}),
            "trials": int(used["trials"]), "warmup_trials": int(warm_trials), "scope": scope}


def candidate_for(rt: Runtime, info: Any, source: str, scope: str, level: int) -> Candidate:
    """The level-(k+1) candidate that races store mechanism ``info`` (a level-k mechanism)."""
    from recur.mechanism_store.gate import defined_hooks

    payload = {"mechanism": info.name, "branch": info.branch, "slug": info.slug, "hooks": defined_hooks(source),
               "family": info.trailers.get("Family") or info.slug}
    return Candidate(scope, level + 1, payload["family"], payload, scope_seed(rt, scope))


def describe(result: dict[str, Any], where: str) -> str:
    """One trailer line: ``+0.00123 per trial over 4 pair(s) on held-out seeds (ok)``."""
    score = result["score"]
    text = "-" if score is None else f"{score:+.6g}"
    return f"{text} per trial over {len(result['pairs'])} pair(s) {where} ({result['status']})"


def replicate_races(rt: Runtime, opts: Any, branch: str, start: WindowStart, n: int, tag: str = "replicate") -> list[dict[str, Any]]:
    """Race ``branch`` ``n`` times from the same point, each race on its own block of fresh trial indices:
    how the gate's null promotion rate and power are measured (tests/test_protocol.py, bench/bench_gate.py)."""
    lin = start.lineage
    out = []
    for i in range(n):
        fresh = WindowStart(Lineage(lin.head, lin.best, lin.best_sha, HELDOUT_INDEX + 100_000 * (i + 1), lin.trail),
                            start.active)
        out.append(heldout_evaluate(rt, opts, branch, fresh, f"{rt.run_id}/{tag}/{i}"))
    return out


def measure_races(source: str, n: int, seed: int, window: int = 1, max_pairs: int = 8, alpha: float = 0.05) -> list[dict[str, Any]]:
    """``n`` races of the level-1 mechanism ``source`` on the synthetic task from one start (baseline and one
    window, in a temporary workspace): the measured promotion rate of the race for that mechanism (no screen:
    the screen is a filter in front of the race, measured on its own)."""
    import tempfile
    from pathlib import Path

    from recur.levels.run import Run, RunOptions
    from recur.levels.window import Level1

    opts = RunOptions(model="scripted", task="synthetic", levels=2, window=window, max_pairs=max_pairs, alpha=alpha,
                      seed=seed, screen_seeds=0)
    with tempfile.TemporaryDirectory() as d, Run(Path(d), opts, resume=False) as run:
        rt = run.rt = run.setup()
        base = run.baseline(rt)
        assert base.final is not None
        warm = Level1(rt).run_window(f"{rt.run_id}/warm", WindowStart(base.final.lineage, {}), 6)
        assert warm.final is not None
        info = rt.store.add_candidate(1, "measured", source)
        return replicate_races(rt, opts, info.branch, warm.final, n, "measure")
