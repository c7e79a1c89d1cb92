"""``recur mech eval``: a user's own mechanism judged exactly as an outer level judges a candidate.

Same workspace machinery as ``recur run --levels K+1`` (baseline repeats for the noise threshold, incumbent
windows until the level below has made the decisions a run's level needs before its first candidate), then the gate, the dry run, the race and the
held-out pairs of ``OuterLoop.evaluate``/``accept`` through ``heldout_evaluate(charge=True)``: no second copy
of the protocol exists for this command.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from recur.levels.outer import MIN_DECISIONS
from recur.levels.run import Run, RunOptions
from recur.levels.stack import window_length


def eval_budget(level: int, opts: RunOptions) -> int:
    """Level-1 trials the worst case needs: baseline, warm-up windows (at most one per decision the level below
    must have made, ``heldout_evaluate``), and every pair of a full race."""
    child = window_length(level, opts.window, opts.meta_window)
    return opts.baseline_repeats + MIN_DECISIONS * child + 2 * child * (opts.max_pairs + opts.confirm_pairs)


def slug_for(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_]", "_", Path(name).stem.lower()).strip("_") or "mechanism"
    return slug if slug[0].isalpha() else f"m_{slug}"[:48]


def evaluate_mechanism(target: str, level: int, opts: RunOptions, workdir: Path | None) -> dict[str, Any]:
    """Judge ``target`` (a module file, or a store branch of the workspace) as a level-``level`` mechanism."""
    from recur.evidence.heldout import heldout_evaluate
    from recur.levels.window import WindowStart
    from recur.mechanism_store.gate import gate

    opts.levels = level + 1
    opts.max_trials = eval_budget(level, opts)
    with Run(workdir, opts, resume=False) as run:
        rt = run.rt = run.setup()
        path = Path(target)
        if path.is_file():
            source, slug = path.read_text(encoding="utf-8"), slug_for(path.name)
        else:
            info = rt.store.info(target)
            source, slug = rt.store.source(info.branch), info.slug
        report = gate(source, seed=opts.seed % 1000)
        result: dict[str, Any] = {"verdict": "unsafe", "pairs": 0, "trials": 0, "mean_diff": None, "ci": None,
                                  "p": None, "calls": {}, "effects": {}, "gate": report.summary(), "run_id": run.run_id}
        if not report.passed:
            run.trace.finish_run(run.run_id, "finished")
            return result
        info = rt.store.add_candidate(level, slug, source, trailers={"Model": "user", "Family": slug,
                                                                     "Diagnosis": "recur mech eval"})
        base = run.baseline(rt)
        assert base.final is not None
        start = WindowStart(base.final.lineage, {lv: rt.store_active(lv) for lv in range(1, level + 1)})
        judged = heldout_evaluate(rt, run.opts, info.branch, start, f"{run.run_id}/eval/{info.name}", charge=True,
                                  screen=True)
        race = judged.get("race") or {}
        result.update({"verdict": judged["verdict"], "pairs": race.get("pairs", 0), "trials": judged["trials"],
                       "mean_diff": judged["score"], "ci": judged["ci"], "p": race.get("p"),
                       "calls": judged["hook_calls"], "effects": judged["hook_effects"], "reason": judged["reason"],
                       "dry_run": judged["dry_run"], "confirm": [p["diff"] for p in judged["confirm"]],
                       "setup_trials": opts.baseline_repeats + judged["warmup_trials"], "mechanism": info.name})
        status = {"promoted": "confirmed"}.get(judged["verdict"], judged["verdict"])
        rt.store.update(info.branch, status, Score=None if judged["score"] is None else f"{judged['score']:.6g}",
                        Hook_Calls=", ".join(f"{h}={n}" for h, n in judged["hook_calls"].items()) or None,
                        Hook_Effects=", ".join(f"{h}={n}" for h, n in judged["hook_effects"].items()) or None,
                        Pairs=str(result["pairs"]), Trials=str(result["trials"]))
        run.trace.finish_run(run.run_id, "finished")
    return result
