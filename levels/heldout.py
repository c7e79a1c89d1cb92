"""Held-out re-evaluation of a promoted mechanism: the same paired candidate/control windows that promoted it,
on trial seeds it was never scored on (and, for transfer, on another task).

A gain that only shows on the seeds used to select a mechanism is selection noise; the held-out score is what
``recur ablate`` reports next to the promotion score. It runs through the level's own evaluate, so nothing
here knows which level it re-evaluates.
"""
from __future__ import annotations

from typing import Any

from recur.core.budget import Budget
from recur.core.loop import derive_seed
from recur.core.records import Candidate
from recur.levels.outer import OuterLoop, OuterState
from recur.levels.runtime import Runtime
from recur.levels.window import WindowStart


def promoted_branches(rt: Runtime) -> list[str]:
    """Branches this workspace's runs promoted (not ``applied`` by hand or by ``--apply``)."""
    return [m.branch for m in rt.store.list(status="promoted")]


def heldout_evaluate(rt: Runtime, opts: Any, branch: str, start: WindowStart, scope: str) -> dict[str, Any]:
    """Score ``branch`` (a level-k mechanism) with level k+1's paired windows under ``scope``'s fresh seeds.

    ``start.active`` may include the mechanism itself (it was promoted): it is taken out for the control."""
    from recur.levels.stack import build
    from recur.mechanism_store.gate import defined_hooks

    info = rt.store.info(branch)
    k = info.level
    source = rt.store.source(info.branch)
    rt.source_cache[info.name] = source
    evaluator = build(rt, k + 1, opts.window, opts.meta_window, opts.pairs)
    active = {lv: [m for m in ms if m.name.rsplit("-", 1)[0] != info.slug] for lv, ms in start.active.items() if lv <= k}
    state = OuterState(WindowStart(start.sha, start.metric, active))
    loop = OuterLoop(rt, k + 1, evaluator.child, state, None, evaluator.child_steps, evaluator.pairs)
    payload = {"mechanism": info.name, "branch": info.branch, "slug": info.slug, "hooks": defined_hooks(source),
               "family": info.trailers.get("Family") or info.slug}
    candidate = Candidate(scope, k + 1, payload["family"], payload, derive_seed(rt.seed, scope))
    saved, rt.budget = rt.budget, Budget()  # held-out trials are extra: they never eat the run's budget
    try:
        outcome = loop.evaluate(candidate, rt.budget)
    finally:
        used, rt.budget = rt.budget.used, saved
    return {"mechanism": info.name, "level": k, "score": outcome.metric, "status": outcome.status,
            "pairs": outcome.info.get("pairs", []), "hook_calls": outcome.info.get("hook_calls", {}),
            "trials": int(used["trials"]), "scope": scope}


def describe(result: dict[str, Any], where: str) -> str:
    """One trailer line: ``+0.00123 per trial over 2 pair(s) on held-out seeds (ok)``."""
    score = result["score"]
    text = "-" if score is None else f"{score:+.6g}"
    return f"{text} per trial over {len(result['pairs'])} pair(s) {where} ({result['status']})"
