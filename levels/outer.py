"""Level k >= 2, the outer loop: its candidates are mechanisms for level k-1's search policy.

propose: the level's policy (model or scripted baseline, plus level k's own active mechanisms) picks a
mechanism specification; it is rendered (or, from a capable model, taken as written), passed through the
gate (static policy + property tests in the sandbox) and committed as a store branch.
evaluate: run level k-1 for a window with the candidate active and a control window without it, from the
same start and on the same trial seeds (``--pairs`` times); score = gain of the task metric per level-1
trial, candidate minus control.
accept: the activation check (every hook the mechanism defines was called, few errors; else ``inactive``)
and the statistical gate; a level-(k+1) ``accept`` mechanism may overrule the gate. Nothing here knows which
k it is: level 3 is this class with level 2 as its child.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Protocol

from recur.core.budget import Budget
from recur.core.hooks import ActiveMechanism
from recur.core.loop import Loop, StepContext, drive
from recur.core.records import OK, Candidate, Decision, Outcome, Trial
from recur.core.stats import bootstrap_ci, paired_pvalue
from recur.levels.runtime import Runtime
from recur.levels.window import WindowResult, WindowStart, close_policy, hook_counts_json, make_policy

UNSAFE = "unsafe"
INACTIVE = "inactive"
BUDGET = "budget"
MAX_ERROR_RATE = 0.2


class WindowRunner(Protocol):
    level: int

    def run_window(self, scope: str, start: WindowStart, steps: int, **kw: Any) -> WindowResult: ...


class ExtraProposer(Protocol):
    """Proposes ready-made candidates (e.g. ports of lower-level mechanisms) instead of the policy."""

    def propose(self, level: int, step: int, history: list[Trial]) -> dict[str, Any] | None: ...


def family_space(families: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Level k's search space: a family choice plus every family's tunables as ``family.param``."""
    space: dict[str, dict[str, Any]] = {"family": {"type": "choice", "choices": sorted(families)}}
    for fam, spec in sorted(families.items()):
        for name, p in spec["params"].items():
            space[f"{fam}.{name}"] = {k: v for k, v in p.items() if k != "default"}
    return space


def default_point(families: dict[str, dict[str, Any]], family: str) -> dict[str, Any]:
    point: dict[str, Any] = {"family": family}
    for fam, spec in families.items():
        for name, p in spec["params"].items():
            point[f"{fam}.{name}"] = p["default"]
    return point


def family_params(params: dict[str, Any]) -> dict[str, Any]:
    fam = params["family"]
    return {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(fam + ".")}


@dataclass
class OuterState:
    start: WindowStart
    best_metric: float | None = None
    best_sha: str = ""
    history_sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.best_metric = self.start.metric if self.best_metric is None else self.best_metric
        self.best_sha = self.best_sha or self.start.sha


class OuterLoop(Loop):
    def __init__(self, rt: Runtime, level: int, child: WindowRunner, state: OuterState, policy, child_steps: int,
                 pairs: int, extra: list[ExtraProposer] | None = None):
        from recur.mechanism_store.builtin import BUILTIN_FAMILIES

        self.rt = rt
        self.level = level
        self.child = child
        self.state = state
        self.policy = policy
        self.child_steps = child_steps
        self.pairs = pairs
        self.extra = extra or []
        self.families = BUILTIN_FAMILIES
        self.space = family_space(self.families)

    def hook_delta(self) -> dict:
        return self.policy.hooks.take_delta() if self.policy else {}

    # ------------------------------------------------------------ propose
    def propose(self, ctx: StepContext) -> Candidate:
        from recur.levels.diagnosis import diagnose
        from recur.mechanism_store.builtin import render

        rt, k = self.rt, self.level
        for extra in self.extra:
            ready = extra.propose(k, ctx.step, ctx.history)
            if ready is not None:
                return self._candidate(ctx, ready)
        child_records = [t for t in rt.trace.trials(rt.run_id, level=k - 1) if t["status"] != "running"][-60:]
        last = [t for t in ctx.history if t.outcome.ok]
        incumbent = (last[-1].candidate.payload.get("params") if last else None) or default_point(self.families, "tabu")
        context = {
            "level": k, "step": ctx.step, "space": self.space, "frozen": [], "guidance": [],
            "incumbent": incumbent, "best_metric": max((t.outcome.metric for t in last), default=None),
            "maximize": True, "history": [t.as_record() for t in ctx.history][-50:],
            "diagnosis": diagnose(child_records, k - 1),
            "families": {f: {"summary": s["summary"], "hooks": s["hooks"], "answers": s["answers"]} for f, s in self.families.items()},
            "active": [m.name for m in self.state.start.active.get(k - 1, [])],
        }
        proposal, _ = self.policy.choose(context, ctx.seed, ctx.trial_id)
        params = dict(proposal["payload"].get("params", {}))
        family = params.get("family") or "tabu"
        source = proposal["payload"].get("source")
        if not source:
            source = render(family, family_params({**default_point(self.families, family), **incumbent, **params, "family": family}))
        return self._candidate(ctx, {"family": family, "params": params, "source": source,
                                     "diagnosis": proposal.get("rationale") or ", ".join(context["diagnosis"]["tags"]),
                                     "model": getattr(self.policy.backend, "name", "?"), "parent": None})

    def _candidate(self, ctx: StepContext, spec: dict[str, Any]) -> Candidate:
        from recur.mechanism_store.gate import gate

        rt, k = self.rt, self.level
        report = gate(spec["source"], seed=ctx.seed % 1000)
        slug = spec.get("slug") or spec["family"]
        meta = {"Model": spec.get("model"), "Family": spec["family"], "Diagnosis": spec.get("diagnosis")}
        if spec.get("parent"):  # recursive bootstrapping goes through the store's port operation
            info = rt.store.port(spec["parent"], k - 1, source=spec["source"], **meta)
        else:
            info = rt.store.add_candidate(k - 1, slug, spec["source"], trailers=meta)
        payload = {"params": spec.get("params", {}), "mechanism": info.name, "branch": info.branch, "slug": slug,
                   "hooks": report.hooks, "family": spec["family"]}
        if spec.get("parent"):
            payload["port_of"] = spec["parent"]
        if not report.passed:
            payload["unsafe"] = report.summary()
        return Candidate(ctx.trial_id, k, spec["family"], payload, ctx.seed, parent=spec.get("parent"))

    # ----------------------------------------------------------- evaluate
    def evaluate(self, candidate: Candidate, budget: Budget) -> Outcome:
        p = candidate.payload
        if p.get("unsafe"):
            return Outcome(UNSAFE, info={"gate": p["unsafe"]})
        k = self.level
        mech = ActiveMechanism(p["mechanism"], self.rt.mechanism_source(p["mechanism"]), list(p["hooks"]))
        base_active = self.state.start.active
        with_mech = {**base_active, k - 1: [m for m in base_active.get(k - 1, []) if m.name.rsplit("-", 1)[0] != p["slug"]] + [mech]}
        start = WindowStart(self.state.best_sha, self.state.best_metric, base_active)
        pairs, results = [], []
        for i in range(self.pairs):
            seed_scope = f"{candidate.id}/p{i}"
            cand = self.child.run_window(f"{seed_scope}/cand", WindowStart(start.sha, start.metric, with_mech),
                                         self.child_steps, seed_scope=seed_scope)
            ctrl = self.child.run_window(f"{seed_scope}/ctrl", start, self.child_steps, seed_scope=seed_scope)
            results.append((cand, ctrl))
            per = max(1, cand.trials)
            maximize = self.rt.task.maximize
            pairs.append({"cand_gain": cand.gain(maximize), "ctrl_gain": ctrl.gain(maximize),
                          "diff": (cand.gain(maximize) - ctrl.gain(maximize)) / per,
                          "diff_per_second": _per_second(cand, maximize) - _per_second(ctrl, maximize),  # the GPU-hour view
                          "cand_trials": cand.trials, "ctrl_trials": ctrl.trials,
                          "cand_seconds": cand.seconds, "ctrl_seconds": ctrl.seconds})
        calls = {h: 0 for h in mech.hooks}
        errors = 0
        for cand, _ in results:
            for key, v in cand.hook_counts.items():
                name, hook = key.split("\t", 1)
                if name == mech.name:
                    calls[hook] = calls.get(hook, 0) + v["calls"]
                    errors += v["errors"]
        diffs = [x["diff"] for x in pairs]
        windows = [w for pair in results for w in pair]
        best = min((w for w in windows if w.best_metric is not None), default=None,
                   key=lambda w: -w.best_metric if self.rt.task.maximize else w.best_metric)
        info = {"pairs": pairs, "hook_calls": calls, "hook_errors": errors, "mechanism": mech.name,
                "best_sha": best.best_sha if best else start.sha, "best_metric": best.best_metric if best else start.metric,
                "final_cand": results[-1][0].final.to_json() if results[-1][0].final else None,
                "final_ctrl": results[-1][1].final.to_json() if results[-1][1].final else None,
                "trials": sum(w.trials for w in windows), "window_trials": self.child_steps,
                "seconds": sum(w.seconds for w in windows)}
        expected = self.child_steps
        if any(w.trials < expected for w in windows) and budget.exhausted:
            return Outcome(BUDGET, metric=None, info=info)
        total = sum(calls.values())
        if any(c == 0 for c in calls.values()) or (total and errors / total > MAX_ERROR_RATE):
            return Outcome(INACTIVE, metric=statistics.fmean(diffs), info=info)
        return Outcome(OK, metric=statistics.fmean(diffs), info=info)

    # ------------------------------------------------------------- accept
    def accept(self, candidate: Candidate, outcome: Outcome, history: list[Trial]) -> Decision:
        if outcome.status != OK:
            reason = {UNSAFE: "failed the gate", INACTIVE: "inactive: a defined hook was never called or errored",
                      BUDGET: "budget ran out mid-evaluation"}.get(outcome.status, outcome.status)
            return Decision(False, reason, {"status": outcome.status})
        diffs = [p["diff"] for p in outcome.info["pairs"]]
        lo, hi = bootstrap_ci(diffs, candidate.seed)
        mean = statistics.fmean(diffs)
        gain_diff = statistics.fmean(p["cand_gain"] - p["ctrl_gain"] for p in outcome.info["pairs"])
        if len(diffs) >= 2:
            passed = lo > 0
            why = f"paired bootstrap 95% CI [{lo:.5f}, {hi:.5f}]"
        else:
            passed = gain_diff > self.rt.threshold
            why = f"gain difference {gain_diff:.5f} vs noise threshold {self.rt.threshold:.5f} (one pair)"
        keep = passed
        verdict = self.policy.hooks.accept(
            {"metric": mean, "status": outcome.status, "best_metric": None, "incumbent_metric": 0.0,
             "default_keep": passed, "maximize": True, "step": int(candidate.id.rsplit("/", 1)[-1])},
            [t.as_record() for t in history][-50:], candidate.seed) if self.policy else None
        if verdict is not None and verdict != passed:
            keep, why = verdict, why + "; overruled by an accept mechanism"
        p_value = paired_pvalue(diffs, seed=candidate.seed)  # reported beside the CI; 1.0 with a single pair
        return Decision(keep, ("promote: " if keep else "reject: ") + why + f"; paired p = {p_value:.3g}",
                        {"ci": [lo, hi], "p": p_value, "status": "promoted" if keep else "rejected"})

    # ------------------------------------------------------------- record
    def record(self, trial: Trial) -> str | None:
        c, o, d = trial.candidate, trial.outcome, trial.decision
        rt = self.rt
        store = rt.store
        status = d.info.get("status", o.status if o.status in (UNSAFE, INACTIVE) else "rejected")
        trailers = {"Score": None if o.metric is None else f"{o.metric:.6g}",
                    "CI": json.dumps([round(x, 6) for x in d.info["ci"]]) if d.info.get("ci") else None,
                    "P-Value": None if d.info.get("p") is None else f"{d.info['p']:.4g}",
                    "Hook-Calls": ", ".join(f"{h}={n}" for h, n in o.info.get("hook_calls", {}).items()) or None,
                    "Trial": c.id}
        info = store.info(c.payload["branch"])
        if d.keep:
            if info.status != "promoted":
                store.promote(info.branch, **trailers)
        elif info.status != status:
            store.update(info.branch, status, **trailers)
        if o.info.get("best_metric") is not None and (self.state.best_metric is None or (
                o.info["best_metric"] > self.state.best_metric if rt.task.maximize else o.info["best_metric"] < self.state.best_metric)):
            self.state.best_metric, self.state.best_sha = o.info["best_metric"], o.info["best_sha"]
        final = o.info.get("final_cand" if d.keep else "final_ctrl")
        if final:
            nxt = WindowStart.from_json(final, rt.mechanism_source)
            self.state.start = WindowStart(self.state.best_sha, self.state.best_metric, nxt.active)
        return None


def _per_second(window: WindowResult, maximize: bool) -> float:
    """Gain of the task metric per second of trial time (0 for a window that spent none)."""
    return window.gain(maximize) / window.seconds if window.seconds > 0 else 0.0


class LevelK:
    """Level k >= 2 as a window runner, over ``child`` (level k-1)."""

    def __init__(self, rt: Runtime, level: int, child: WindowRunner, child_steps: int, pairs: int,
                 extra: list[ExtraProposer] | None = None):
        self.rt = rt
        self.level = level
        self.child = child
        self.child_steps = child_steps
        self.pairs = pairs
        self.extra = extra or []

    def run_window(self, scope: str, start: WindowStart, steps: int, seed_scope: str | None = None, **_: Any) -> WindowResult:
        rt, k = self.rt, self.level
        policy = make_policy(rt, k, start.active.get(k, []))
        state = OuterState(WindowStart(start.sha, start.metric, {lv: list(ms) for lv, ms in start.active.items() if lv < k}))
        loop = OuterLoop(rt, k, self.child, state, policy, self.child_steps, self.pairs, self.extra)
        try:
            history = drive(loop, rt.trace, rt.run_id, scope, steps, rt.budget, on_trial=rt.on_trial, seed_scope=seed_scope, run_seed=rt.seed)
        finally:
            close_policy(policy)
        counts = rt.trace.scope_hook_calls(scope)
        for mech in start.active.get(k, []):
            for hook in mech.hooks:
                counts.setdefault((mech.name, hook), {"calls": 0, "errors": 0, "seconds": 0.0, "last_error": None})
        rt.trace.add_hook_calls(rt.run_id, scope, k, counts)
        final_active = {**state.start.active, k: start.active.get(k, [])}
        trials = sum(int(t.outcome.info.get("trials", 0)) for t in history)
        return WindowResult(scope, start.metric, state.best_metric, state.best_sha, trials=trials,
                            seconds=sum(float(t.outcome.info.get("seconds", 0.0)) for t in history),
                            hook_counts=hook_counts_json(counts),
                            final=WindowStart(state.best_sha, state.best_metric, final_active))
