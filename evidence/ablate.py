"""``recur ablate``: the reference paper's A/B/C/D table (plus E), every group under one harness.

Every (group, repeat) is a fresh workspace running the same ``Run`` code as ``recur run``, on the same task
files, the same run seed per repeat (so the same baseline trials and, on the synthetic task, the same surface
instance), and the same level-1 trial budget. Only the active levels and the mechanisms applied from the
start differ. Jobs go through the executor's worker pool, interleaved (the group order rotates per repeat) so
that machine drift does not favour a group. Rerunning the same command continues an interrupted ablation:
finished jobs are read back, interrupted ones resume.

After a run, each mechanism it promoted is re-evaluated on held-out trial seeds (and with ``--transfer-task``
on another task); the result goes into the mechanism's store trailers and the table.
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

GROUPS: dict[str, dict[str, Any]] = {
    "A": {"label": "level 1 only", "levels": 1, "apply": []},
    "B": {"label": "level 1 + parameter guidance (level 1.5)", "levels": 1, "apply": ["freeze_guidance"], "extends": "A"},
    "C": {"label": "B + level 2", "levels": 2, "apply": ["freeze_guidance"], "extends": "B"},
    "D": {"label": "level 1 + level 2", "levels": 2, "apply": [], "extends": "A"},
    # E is D + level 3, so E - D is level 3's effect alone; until 2026-12-02 it was C + level 3 (now F), which
    # also carried level 1.5: applied freeze_guidance halves the best family's gain (docs/design-notes.md)
    "E": {"label": "D + level 3", "levels": 3, "apply": [], "extends": "D"},
    "F": {"label": "C + level 3", "levels": 3, "apply": ["freeze_guidance"], "extends": "C"},
}
JOB_RESULT = "ablation-job.json"


class AblationError(ValueError):
    """Bad ablation options; one clear line for the user."""


@dataclass
class AblationSpec:
    groups: list[str]
    repeats: int
    max_trials: int | None = None  # None: what the deepest group's default plan needs (two top candidates)
    task: str = "synthetic"
    preset: str | None = None
    model: str = "scripted"
    api_base: str | None = None
    seed: int = 0
    workers: int | None = None  # None: one per core for a task whose runs are light CPU processes, else 1
    window: int = 3
    meta_window: int = 4
    max_pairs: int = 16
    alpha: float = 0.05
    trial_seconds: float | None = None
    transfer_task: str | None = None
    heldout: bool = True
    instances: int | None = None  # runs averaged per repeat (None: the task's default, 1 unless it says)

    @property
    def id(self) -> str:
        """Deterministic, so the same command finds and continues its own ablation."""
        many = f"-i{self.instances}" if self.instances and self.instances > 1 else ""
        return (f"{self.task}-{self.preset or 'default'}-{''.join(self.groups)}-r{self.repeats}{many}-t{self.max_trials}"
                f"-w{self.window}-m{self.meta_window}-p{self.max_pairs}-a{self.alpha:g}-{self.model.replace('/', '_')}-s{self.seed}")

    def run_seed(self, repeat: int, instance: int = 0) -> int:
        """The run seed of one instance of a repeat, the same in every group (so the same baseline trials and, on
        the synthetic task, the same surface); with one instance per repeat, seed + repeat."""
        return self.seed + repeat * max(1, self.instances or 1) + instance

    def run_options(self, group: str, repeat: int, instance: int = 0) -> Any:
        from recur.levels.run import RunOptions

        g = GROUPS[group]
        return RunOptions(levels=g["levels"], task=self.task, preset=self.preset, model=self.model,
                          api_base=self.api_base, max_trials=self.max_trials, trial_seconds=self.trial_seconds,
                          seed=self.run_seed(repeat, instance), window=self.window, meta_window=self.meta_window,
                          max_pairs=self.max_pairs, alpha=self.alpha, apply=list(g["apply"]))

    def check(self) -> None:
        from recur.core.task import TaskError, available_tasks
        from recur.levels.stack import PlanError

        tasks = available_tasks()
        if self.task not in tasks:
            raise TaskError(f"unknown task {self.task!r}; installed tasks: {', '.join(sorted(tasks)) or 'none'}")
        task_class = tasks[self.task].load()
        if self.workers is None:
            self.workers = (os.cpu_count() or 1) if task_class.ablation_parallel else 1
        if self.instances is None:
            self.instances = max(1, int(task_class.ablation_instances or 1))
        if self.max_trials is None and task_class.ablation_trials:
            self.max_trials = int(task_class.ablation_trials)
        if self.max_trials is None:
            deepest = max(self.groups, key=lambda g: GROUPS.get(g, {"levels": 0})["levels"]) if self.groups else "A"
            if deepest in GROUPS:
                self.max_trials = self.run_options(deepest, 0).plan()[0]
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise AblationError(f"unknown group(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(GROUPS)}")
        if len(set(self.groups)) != len(self.groups):
            raise AblationError("each group may be named once")
        for g in self.groups:
            try:
                self.run_options(g, 0).plan()
            except PlanError as exc:
                raise AblationError(f"group {g} ({GROUPS[g]['label']}): {exc}") from None


def job_order(groups: list[str], repeats: int) -> list[tuple[str, int]]:
    """Repeat r runs the groups rotated by r: no group is always first (or last) when the machine drifts."""
    order = []
    for r in range(repeats):
        k = r % len(groups)
        order += [(g, r) for g in groups[k:] + groups[:k]]
    return order


def job_name(group: str, repeat: int, instance: int = 0) -> str:
    """A job's workspace folder: ``D-r3`` (instance 0, as with one instance per repeat), ``D-r3-i1``..."""
    return f"{group}-r{repeat}" + (f"-i{instance}" if instance else "")


# ------------------------------------------------------------------ one job (a subprocess)
def open_run(ws: Path, opts: Any) -> Any:
    """A Run in ``ws``: new if the workspace has none, else the existing one (resumed, or reopened if finished)."""
    from recur.core.trace import TraceStore
    from recur.levels.run import Run

    trace_path = ws / ".recur" / "trace.db"
    if trace_path.exists():
        trace = TraceStore(trace_path)
        try:
            info = trace.run()
        finally:
            trace.close()
        if info is not None:
            return Run(ws, None, resume=True, reopen_finished=True)
    return Run(ws, opts, resume=False)


def run_job(spec_path: Path) -> dict[str, Any]:
    """Run one (group, repeat): the level stack, then held-out (and transfer) checks of what it promoted."""
    from recur.core.trace import charged_trials
    from recur.evidence.heldout import describe, heldout_evaluate, heldout_lineage, promoted_branches
    from recur.levels.window import WindowStart

    job = json.loads(spec_path.read_text())
    ws = Path(job["ws"])
    spec = AblationSpec(**job["spec"])
    instance = int(job.get("instance", 0))
    opts = spec.run_options(job["group"], job["repeat"], instance)
    with open_run(ws, opts) as run:
        info = run.trace.run()
        status = info["status"] if info else "new"
        if status in ("finished", "budget"):
            rt = run.rt = run.setup()
            summary = None
        else:
            summary = run.execute()
            rt = run.rt
        run_id = run.run_id
        trials = [t for t in run.trace.trials(run_id, level=1) if "/heldout/" not in t["scope"]]
        start_metric = _best([t for t in trials if t["scope"] == f"{run_id}/baseline"], rt.task.maximize)[0]
        calls = run.trace.llm_calls(run_id)
        best = _best(trials, rt.task.maximize)
        result: dict[str, Any] = {
            "group": job["group"], "repeat": job["repeat"], "instance": instance, "workspace": str(ws), "run_id": run_id,
            "start_metric": start_metric, "best_metric": best[0], "best_commit": best[1] or run.config["initial_commit"],
            "trials": charged_trials(trials), "tokens": sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in calls),
            "usd": sum(c["cost_usd"] or 0.0 for c in calls), "status": summary["status"] if summary else status,
            "promoted": [],
        }
        result["delta"] = None if best[0] is None or start_metric is None else best[0] - start_metric
        result["curve"] = best_so_far(trials, start_metric, rt.task.maximize)
        hook_calls = run.trace.hook_totals(run_id)  # summed over every window of the run, not just the last
        for branch in promoted_branches(rt):
            m = rt.store.info(branch)
            entry = {"name": m.name, "level": m.level, "score": m.score,
                     "hook_calls": {hook: n["calls"] for (mech, hook), n in hook_calls.items() if mech == m.name},
                     "hook_effects": {hook: n["changed"] for (mech, hook), n in hook_calls.items() if mech == m.name}}
            if spec.heldout:
                scope = f"{run_id}/heldout/{m.name}"
                start = WindowStart(heldout_lineage(rt, best[1] or run.config["initial_commit"], best[0], scope),
                                    {lv: rt.store_active(lv) for lv in range(1, opts.levels + 1)})
                held = heldout_evaluate(rt, opts, branch, start, scope)
                rt.store.update(branch, None, Held_Out=describe(held, "on held-out seeds"))
                entry["heldout"] = held["score"]
                entry["heldout_trials"] = held["trials"]
            if spec.transfer_task:
                moved = transfer_evaluate(ws, spec, opts.seed, rt.store, branch)
                rt.store.update(branch, None, Transfer=f"{spec.transfer_task}: {describe(moved, 'on another task')}")
                entry["transfer"] = moved["score"]
            result["promoted"].append(entry)
        result["store_main"] = rt.store.main_sha
        run.trace.finish_run(run_id, result["status"])
    (ws / JOB_RESULT).write_text(json.dumps(result, indent=2))
    return result


def transfer_evaluate(ws: Path, spec: AblationSpec, seed: int, store: Any, branch: str) -> dict[str, Any]:
    """Score a mechanism on ``spec.transfer_task`` in its own workspace: baseline, then paired windows."""
    from recur.evidence.heldout import heldout_evaluate
    from recur.levels.run import RunOptions
    from recur.levels.window import WindowStart

    info = store.info(branch)
    target = ws.parent / f"{ws.name}-transfer-{spec.transfer_task}-{info.name}"
    opts = RunOptions(levels=info.level + 1, task=spec.transfer_task, model=spec.model, api_base=spec.api_base,
                      seed=seed, window=spec.window, meta_window=spec.meta_window,
                      max_pairs=spec.max_pairs, alpha=spec.alpha,
                      trial_seconds=spec.trial_seconds)
    with open_run(target, opts) as run:
        rt = run.rt = run.setup()
        base = run.baseline(rt)
        moved = rt.store.add_candidate(info.level, info.slug, store.source(branch),
                                       trailers={"Model": info.trailers.get("Model"), "Family": info.trailers.get("Family"),
                                                 "Diagnosis": f"transfer of {info.name} from task {spec.task}"})
        scope = f"{run.run_id}/transfer/{info.name}"
        assert base.final is not None
        result = heldout_evaluate(rt, run.opts, moved.branch, WindowStart(base.final.lineage, {}), scope)
        run.trace.finish_run(run.run_id, "finished")
    return result


def _best(trials: list[dict[str, Any]], maximize: bool) -> tuple[float | None, str | None]:
    """The best ok trial's metric and commit (None, None when no trial succeeded)."""
    from recur.core.report_tables import best_value

    ok = [t for t in trials if t["status"] == "ok"]
    value = best_value([t["metric"] for t in ok], maximize)
    return (None, None) if value is None else (value, next(t["commit_sha"] for t in ok if t["metric"] == value))


def best_so_far(trials: list[dict[str, Any]], start: float | None, maximize: bool) -> list[float | None]:
    """Δ of the best metric from ``start`` after each charged level-1 trial, in the order trials started (a
    reused trial costs nothing and adds no point): the curve a reader compares across groups at equal budget."""
    if start is None:
        return []
    best, curve = start, []
    for t in trials:
        if t["status"] == "running" or not (t["outcome"] or {}).get("cost", {}).get("trials", 1):
            continue
        if t["status"] == "ok" and t["metric"] is not None:
            best = max(best, t["metric"]) if maximize else min(best, t["metric"])
        curve.append(best - start)
    return curve


# ------------------------------------------------------------------ the whole ablation
def run_ablation(spec: AblationSpec, root: Path, on_job: Callable[[dict[str, Any], int, int], None] | None = None) -> dict[str, Any]:
    """Run (or continue) every job through the worker pool, then write results.json, table.md and table.csv."""
    from recur.core.executor import WorkerPool
    from recur.core.task import TrialSpec

    spec.check()
    out = root / spec.id
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
    order = [(g, r, i) for g, r in job_order(spec.groups, spec.repeats) for i in range(spec.instances or 1)]
    pool = WorkerPool(spec.workers)
    done: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(group: str, repeat: int, instance: int) -> dict[str, Any]:
        ws = out / job_name(group, repeat, instance)
        ws.mkdir(exist_ok=True)
        finished = ws / JOB_RESULT
        if not finished.exists():
            job_path = ws / "ablation-job-spec.json"
            job_path.write_text(json.dumps({"ws": str(ws), "group": group, "repeat": repeat, "instance": instance,
                                            "spec": asdict(spec)}))
            argv = [sys.executable, "-m", "recur.evidence.ablate", "job", str(job_path)]
            res = pool.run(TrialSpec(argv=argv, cwd=ws, deadline_s=7 * 24 * 3600.0), ws / "ablation-job.log")
            if not finished.exists():
                tail = (ws / "ablation-job.log").read_text(errors="replace")[-600:] if (ws / "ablation-job.log").exists() else ""
                why = "timed out" if res.timed_out else f"exit code {res.returncode}"
                raise AblationError(f"job {job_name(group, repeat, instance)} failed ({why}); log {ws / 'ablation-job.log'}:\n{tail}")
        result = json.loads(finished.read_text())
        with lock:
            done.append(result)
            if on_job:
                on_job(result, len(done), len(order))
        return result

    with ThreadPoolExecutor(max_workers=spec.workers) as ex:
        futures = [ex.submit(one, g, r, i) for g, r, i in order]
        errors = []
        for f in futures:
            try:
                f.result()
            except AblationError as exc:
                errors.append(str(exc))
    if errors:
        raise AblationError(errors[0] + (f"\n(and {len(errors) - 1} more failed jobs)" if len(errors) > 1 else ""))
    results = summarise(spec, done)
    write_outputs(out, results)
    return results


def summarise(spec: AblationSpec, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group: mean and 95% CI of delta, per-repeat values, costs, promotions, held-out, p vs A (paired by
    repeat: same seed, same baseline, same synthetic instance)."""
    from recur.core.stats import mean_ci, paired_pvalue, two_sample_pvalue

    runs: dict[str, dict[int, list[dict[str, Any]]]] = {g: {} for g in spec.groups}
    for j in sorted(jobs, key=lambda j: j.get("instance", 0)):
        runs[j["group"]].setdefault(j["repeat"], []).append(j)
    by_group = {g: {r: _repeat_of(js) for r, js in reps.items()} for g, reps in runs.items()}
    rows = []
    for g in spec.groups:
        reps = [by_group[g][r] for r in sorted(by_group[g])]
        deltas = [j["delta"] for j in reps]
        finite = [d for d in deltas if d is not None]
        lo, hi = mean_ci(finite)
        p = None
        if g != "A" and "A" in by_group:
            diffs, complete = paired_diffs(by_group, g, "A")
            if complete and diffs:
                p = paired_pvalue(diffs, seed=spec.seed)
            else:
                p = two_sample_pvalue(finite, [j["delta"] for j in by_group["A"].values() if j["delta"] is not None], seed=spec.seed)
        every = [j for r in sorted(runs[g]) for j in runs[g][r]]
        promoted = [m for j in every for m in j["promoted"]]
        hooks: dict[str, int] = {}
        for m in promoted:
            for hook, n in m["hook_calls"].items():
                hooks[f"{m['name']}.{hook}"] = hooks.get(f"{m['name']}.{hook}", 0) + n
        held = [m["heldout"] for m in promoted if m.get("heldout") is not None]
        moved = [m["transfer"] for m in promoted if m.get("transfer") is not None]
        rows.append({
            "group": g, "label": GROUPS[g]["label"], "levels": GROUPS[g]["levels"], "apply": GROUPS[g]["apply"],
            "repeats": len(reps), "deltas": deltas, "mean_delta": statistics.fmean(finite) if finite else None,
            "ci_low": lo, "ci_high": hi, "p_vs_A": p,
            "instances": max((len(js) for js in runs[g].values()), default=0),
            "trials_mean": statistics.fmean(j["trials"] for j in every) if every else 0,
            "tokens": sum(j["tokens"] for j in every), "usd": sum(j["usd"] for j in every),
            "curves": [j.get("curve") or [] for j in reps],
            "promoted": len(promoted), "promoted_names": sorted({m["name"] for m in promoted}), "hook_calls": hooks,
            "heldout_mean": statistics.fmean(held) if held else None, "heldout_n": len(held),
            "transfer_mean": statistics.fmean(moved) if moved else None,
            "commits": {job_name(g, j["repeat"], j.get("instance", 0)): {
                "workspace": j["workspace"], "best_commit": j["best_commit"], "store_main": j.get("store_main")}
                for j in every},
        })
    metric, maximize = _metric(spec)
    return {"id": spec.id, "task": spec.task, "preset": spec.preset, "metric": metric, "maximize": maximize,
            "spec": asdict(spec), "groups": rows, "added": [added_effect(g, runs, by_group, spec.seed) for g in spec.groups
                                                          if GROUPS[g].get("extends") in runs]}


def paired_diffs(by_group: dict[str, dict[int, Any]], group: str, base: str) -> tuple[list[float], bool]:
    """``group`` - ``base`` per repeat both ran with a Δ (same seeds), and whether every shared repeat had one."""
    shared = sorted(set(by_group[base]) & set(by_group[group]))
    pairs = [(by_group[group][r]["delta"], by_group[base][r]["delta"]) for r in shared]
    diffs = [x - y for x, y in pairs if x is not None and y is not None]
    return diffs, len(diffs) == len(shared)


def added_effect(group: str, runs: dict[str, dict[int, list[dict[str, Any]]]], by_group: dict[str, dict[int, Any]],
                 seed: int) -> dict[str, Any]:
    """What a group adds to the group it extends (E - D is level 3's effect alone): the paired difference per
    repeat with its CI and two-sided p, and how many single runs differ at all. A level that changes no
    decision leaves every run as the group below ran it, so the runs that differ are where it acted."""
    from recur.core.stats import mean_ci, paired_pvalue

    base = GROUPS[group]["extends"]
    diffs, _ = paired_diffs(by_group, group, base)
    lo, hi = mean_ci(diffs)
    mine = {(j["repeat"], j.get("instance", 0)): j["delta"] for js in runs[group].values() for j in js}
    theirs = {(j["repeat"], j.get("instance", 0)): j["delta"] for js in runs[base].values() for j in js}
    moved = [mine[k] - theirs[k] for k in sorted(set(mine) & set(theirs))
             if mine[k] is not None and theirs[k] is not None and mine[k] != theirs[k]]
    return {"group": group, "extends": base, "repeats": len(diffs),
            "mean_diff": statistics.fmean(diffs) if diffs else None, "ci_low": lo, "ci_high": hi,
            "p": paired_pvalue(diffs, seed=seed) if diffs else None,
            "runs": len(set(mine) & set(theirs)), "runs_differ": len(moved),
            "runs_lower": sum(d < 0 for d in moved), "runs_higher": sum(d > 0 for d in moved)}


def _repeat_of(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """One repeat from its instances' runs: the mean Δ (None if any run has none) and the mean best-so-far
    curve over the trials every instance reached. With one instance, that run's own figures."""
    deltas = [j["delta"] for j in instances]
    curves = [j.get("curve") or [] for j in instances]
    n = min((len(c) for c in curves), default=0)
    curve = [statistics.fmean(c[i] for c in curves) for i in range(n)] if all(
        c[i] is not None for c in curves for i in range(n)) else []
    return {"delta": None if None in deltas or not deltas else statistics.fmean(deltas), "curve": curve}


def _metric(spec: AblationSpec) -> tuple[str, bool]:
    from recur.core.task import TaskError, load_task

    try:
        task = load_task(spec.task, spec.preset, {})
    except TaskError:  # the table still renders without the task's name for its metric
        return "metric", False
    return task.metric_name, task.maximize


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def _times(instances: int) -> str:
    return f" × {instances}" if instances > 1 else ""


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


COLUMNS = ["group", "label", "repeats", "mean_delta", "ci_low", "ci_high", "p_vs_A", "deltas", "trials_mean",
           "tokens", "usd", "promoted", "hook_calls", "heldout_mean", "transfer_mean", "commits"]


def table_markdown(results: dict[str, Any]) -> str:
    lines = [f"Δ best {results['metric']} from the baseline per run (negative = better for a metric to minimise); "
             f"mean ± 95% CI over repeats (a repeat '× n' averages n runs, each its own seed); p: paired sign-flip permutation test against A (same seeds).", ""]
    moved = (results.get("spec") or {}).get("transfer_task")  # a column only for an ablation that transfers
    lines += [
             "| group | what | repeats | Δ best (mean [95% CI]) | per repeat | L1 trials | tokens | USD | promoted "
             "| hook calls | held-out score |" + (f" transfer to {moved} |" if moved else "") + " p vs A |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if moved else "")]
    for r in results["groups"]:
        hooks = ", ".join(f"{k}={v}" for k, v in sorted(r["hook_calls"].items())) or "-"
        lines.append(
            f"| {r['group']} | {r['label']} | {r['repeats']}{_times(r.get('instances', 1))} | {_f(r['mean_delta'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}] "
            f"| {' '.join(_f(d) for d in r['deltas'])} | {r['trials_mean']:.1f} | {r['tokens']} | {r['usd']:.4f} "
            f"| {r['promoted']} | {hooks} | {_f(r['heldout_mean'], 5)} ({r['heldout_n']}) "
            + (f"| {_f(r.get('transfer_mean'), 5)} " if moved else "") + f"| {_p(r['p_vs_A'])} |")
    for a in results.get("added", []):
        lines += ["", f"{a['group']} - {a['extends']} (what {a['group']} adds, paired by repeat): {_f(a['mean_diff'])} "
                      f"[{_f(a['ci_low'])}, {_f(a['ci_high'])}], two-sided p {_p(a['p'])}; {a['runs_differ']} of "
                      f"{a['runs']} runs differ ({a['runs_lower']} lower, {a['runs_higher']} higher)"]
    return "\n".join(lines) + "\n"


def table_csv(results: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for r in results["groups"]:
        writer.writerow([json.dumps(r[c]) if isinstance(r[c], (list, dict)) else ("" if r[c] is None else r[c])
                         for c in COLUMNS])
    return buf.getvalue()


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table_markdown(results))
    (out / "table.csv").write_text(table_csv(results))


if __name__ == "__main__":  # one job, started by run_ablation through the executor
    if len(sys.argv) == 3 and sys.argv[1] == "job":
        run_job(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m recur.evidence.ablate job JOB.json")
