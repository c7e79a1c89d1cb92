"""Level 1, the inner loop: edit the task's editable file, run a trial, keep the edit if it is better.

A window of level 1 starts at a commit with a known metric, proposes edits through the level's search
policy (backend + active mechanisms), runs each as a trial in a scratch folder, keeps it (a commit on the
window's branch) when it beats the best by more than the noise threshold, and otherwise leaves the branch
where it was. The run's first window is the baseline: the unmodified files repeated with different seeds
to measure noise.
"""
from __future__ import annotations

import hashlib
import shutil
import statistics
from dataclasses import dataclass, field
from typing import Any

from recur.core.budget import Budget
from recur.core.edits import EditError, apply_params, apply_unified_diff, coerce, read_constants
from recur.core.loop import Loop, StepContext
from recur.core.policy import SearchPolicy
from recur.core.records import INVALID, VOID, Candidate, Decision, Outcome, Trial
from recur.core.stats import improves
from recur.core.executor import tail
from recur.levels.runtime import Runtime

HISTORY_LIMIT = 100


def edited_source(source: str, payload: dict[str, Any], space: dict, frozen: list[str] = ()) -> str:
    """The editable file after applying a proposal's diff and/or parameter edits."""
    if payload.get("diff"):
        source = apply_unified_diff(source, payload["diff"])
    if payload.get("params"):
        source = apply_params(source, payload["params"], space, frozen)
    if not payload.get("diff") and not payload.get("params"):
        raise EditError("the proposal changes nothing (no params, no diff)")
    return source


def level1_context(space: dict, incumbent: dict[str, Any], best: float | None, maximize: bool, step: int,
                   history: list[dict[str, Any]]) -> dict[str, Any]:
    """What level 1's policy and mechanisms see at a step (the simulated level 1 of a screen builds the same)."""
    return {"level": 1, "step": step, "space": space, "frozen": [], "guidance": [], "incumbent": incumbent,
            "best_metric": best, "maximize": maximize, "history": history}


def level1_payload(proposal: dict[str, Any], guided: dict[str, Any], decision: dict[str, Any],
                   context: dict[str, Any], policy: SearchPolicy) -> dict[str, Any]:
    """A chosen proposal's payload as the trace keeps it: the edit, where it sits in the lineage (``index``), the
    full parameter point it runs (``point``, for model-based mechanisms), and the decision record an outer
    level's dry run replays."""
    payload = dict(proposal["payload"])
    payload["index"] = context["step"]
    params = payload.get("params")
    if isinstance(params, dict) and not payload.get("diff"):
        point = dict(context["incumbent"])
        for name, value in params.items():
            try:
                point[name] = coerce(name, value, context["space"][name])
            except (EditError, KeyError):
                point[name] = value
        payload["point"] = point
    payload["decision"] = decision
    payload["rationale"] = str(proposal.get("rationale", ""))[:500]
    if guided.get("frozen"):
        payload["frozen"] = list(guided["frozen"])
    payload["active"] = [m.name for m in policy.hooks.mechanisms]  # what shaped this edit, for reports
    return payload


def keep_rule(outcome: Outcome, best: float | None, threshold: float, maximize: bool, policy: SearchPolicy | None,
              records: list[dict[str, Any]], seed: int, index: int) -> Decision:
    """Keep a trial when it beats the best by more than the noise threshold, unless an ``accept`` mechanism
    overrides; failures are never kept."""
    if not outcome.ok:
        return Decision(False, f"{outcome.status}", {"improved": False})
    improved = improves(outcome.metric, best, threshold, maximize)
    keep, reason = improved, ("beats best by more than the noise threshold" if improved else "not better")
    asked = {"metric": outcome.metric, "status": outcome.status, "best_metric": best, "incumbent_metric": best,
             "default_keep": improved, "maximize": maximize, "step": index, "threshold": threshold}
    if policy is not None:
        verdict = policy.hooks.accept(asked, records, seed)
        if verdict is not None and verdict != improved:
            keep, reason = verdict, "accept mechanism overrode the gate"
    return Decision(keep, reason, {"improved": improved, "accept": asked})


@dataclass
class WindowState:
    """Where a level-1 window stands: branch head, best metric and the baseline metrics seen."""

    branch: str
    head: str
    best: float | None
    baselines: list[float] = field(default_factory=list)
    best_sha: str = ""

    def __post_init__(self) -> None:
        self.best_sha = self.best_sha or self.head


class InnerLoop(Loop):
    level = 1
    charges_budget = True

    def __init__(self, rt: Runtime, state: WindowState, policy: SearchPolicy | None, baseline_steps: int = 0,
                 prior: list[Trial] | None = None, index: int = 0):
        self.rt = rt
        self.state = state
        self.policy = policy
        self.baseline_steps = baseline_steps
        self.prior = list(prior or [])  # the lineage's trials before this window: mechanisms see the whole run
        self.index = index  # global level-1 trial index of this window's first step
        self.space = rt.task.space()

    def records(self, window: list[Trial]) -> list[dict[str, Any]]:
        recent = (self.prior + window)[-HISTORY_LIMIT:]  # slice first: the lineage grows with the run
        return [t.as_record() for t in recent]

    # ------------------------------------------------------------ propose
    def propose(self, ctx: StepContext) -> Candidate:
        if ctx.step < self.baseline_steps:
            return Candidate(ctx.trial_id, 1, "baseline", {"baseline": True}, ctx.seed, parent=self.state.head)
        assert self.policy is not None
        source = self.rt.repo.read(self.state.head, self.rt.task.editable)
        constants = read_constants(source)
        context = level1_context(self.space, {k: constants[k] for k in self.space if k in constants},
                                 self.state.best, self.rt.task.maximize, self.index + ctx.step,
                                 self.records(ctx.history))
        context.update({"task": self.rt.task.describe(), "metric_name": self.rt.task.metric_name,
                        "source": source, "editable": self.rt.task.editable})
        proposal, guided, decision = self.policy.choose(context, ctx.seed, ctx.trial_id)
        payload = level1_payload(proposal, guided, decision, context, self.policy)
        return Candidate(ctx.trial_id, 1, proposal["kind"], payload, ctx.seed, parent=self.state.head)

    def hook_delta(self) -> dict:
        return self.policy.hooks.take_delta() if self.policy else {}

    # ----------------------------------------------------------- evaluate
    def evaluate(self, candidate: Candidate, budget: Budget) -> Outcome:
        rt = self.rt
        folder = rt.scratch(candidate.id)
        rt.repo.export(candidate.parent, folder)
        memo_key = None
        if not candidate.payload.get("baseline"):
            path = folder / rt.task.editable
            try:
                content = edited_source(path.read_text(), candidate.payload, self.space, candidate.payload.get("frozen", []))
            except EditError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                return Outcome(INVALID, cost={"trials": 1, "seconds": 0.0}, info={"error": str(exc)})
            # the same files on the same seed were already run (the other arm of a pair): reuse, charge nothing
            memo_key = hashlib.sha256(f"{candidate.seed}\0{content}".encode()).hexdigest()
            done = rt.trace.memo(rt.run_id, memo_key)
            if done is not None:
                shutil.rmtree(folder, ignore_errors=True)
                o = done.outcome
                return Outcome(o.status, o.metric, {"trials": 0, "seconds": 0.0},
                               {**o.info, "memo_of": done.id, "memo_key": memo_key})
            path.write_text(content)
        if rt.task.pins(folder) != rt.pins:
            shutil.rmtree(folder, ignore_errors=True)
            return Outcome(VOID, cost={"trials": 1, "seconds": 0.0},
                           info={"error": "the pinned evaluator files changed since the run started; trial voided"})
        spec = rt.task.trial_spec(folder, candidate.seed, rt.trial_seconds)
        log = rt.log_path(candidate.id)
        result = rt.pool.run(spec, log)
        outcome = rt.task.parse(result.log_text(), result.returncode, result.timed_out)
        outcome.cost = {"trials": 1, "seconds": result.seconds}
        outcome.info.setdefault("log", str(log))
        for key in ("node", "gpu"):  # where it ran: the node (Ray places trials anywhere) and its CUDA_VISIBLE_DEVICES
            if getattr(result, key, None) is not None:
                outcome.info[key] = getattr(result, key)
        if memo_key:
            outcome.info["memo_key"] = memo_key
        if not outcome.ok:
            outcome.info.setdefault("log_tail", tail(result.log_text()))
        shutil.rmtree(folder, ignore_errors=True)
        return outcome

    # ------------------------------------------------------------- accept
    def accept(self, candidate: Candidate, outcome: Outcome, history: list[Trial]) -> Decision:
        if candidate.payload.get("baseline"):
            return Decision(keep=False, reason="baseline" if outcome.ok else f"baseline {outcome.status}",
                            info={"baseline": True})
        return keep_rule(outcome, self.state.best, self.rt.threshold, self.rt.task.maximize, self.policy,
                         self.records(history), candidate.seed, candidate.payload.get("index", 0))

    # ------------------------------------------------------------- record
    def record(self, trial: Trial) -> str | None:
        c, o, d = trial.candidate, trial.outcome, trial.decision
        if c.payload.get("baseline"):
            if o.ok and o.metric is not None:
                self.state.baselines.append(o.metric)
                self.state.best = statistics.fmean(self.state.baselines)
            return None
        if not d.keep:
            return None
        repo = self.rt.repo
        sha = repo.find_trial_commit(self.state.branch, c.id)
        if sha is None:
            base = repo.read(c.parent, self.rt.task.editable)
            content = edited_source(base, c.payload, self.space, c.payload.get("frozen", []))
            metric = f"{o.metric:.6f}" if o.metric is not None else "none"
            message = (f"{c.kind}: {self.rt.task.metric_name} {metric}\n\n{c.payload.get('rationale', '')}\n\n"
                       f"Recur-Trial: {c.id}\nRecur-Metric: {metric}\nRecur-Seed: {c.seed}\n")
            sha = repo.commit_file(self.state.branch, self.state.head, self.rt.task.editable, content, message)
        self.state.head = sha
        if d.info.get("improved"):
            self.state.best = o.metric
            self.state.best_sha = sha
        return sha
