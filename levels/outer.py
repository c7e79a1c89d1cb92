"""Level k >= 2, the outer loop: its candidates are mechanisms for level k-1's search policy.

One lineage (docs/protocol.md). Level k moves its lineage (the run's one line of level-1 search) forward in
windows of level k-1. Each step is one of:

* an **incumbent window**: level k-1 runs one window with the mechanisms already active (what level 1 alone
  would do). Taken while level k-1 has made fewer than six decisions a dry run could replay, after three wasted
  candidates (unsafe, inactive, or already proposed since the lineage last moved) or, with a shortlist, as
  many screened and shortlisted as the shortlist's explore limit in a row, when too little budget or
  window is left for a pair, and, at a level that cannot screen its candidates, when too little budget is
  left for a fresh race to reach a look that can promote (``verdict_trials``): such a candidate is ``unraced``
  after its dry run (racing what can never be promoted perturbs level k-1 on no evidence) and counts as wasted;
* a **candidate**: proposed by the level's policy (model or scripted baseline, plus level k's own
  mechanisms), passed through the gate (static policy + property tests in the sandbox, else ``unsafe``) and
  committed as a store branch; then a **dry run** replays level k-1's recorded decisions through it (zero
  trials; if it would change none it is ``inactive``); then a **screen** on simulated level 1; then a
  **race**: blocks of two level-(k-1) windows run one after the other on the lineage, one with the candidate
  active (it takes precedence over the incumbents) and one without, in a seeded random order, both measured
  from the block's start. Every trial of either arm is a trial of the run's one line of search, so a race
  charges nothing beyond the trials themselves and a candidate that changes nothing leaves the run exactly
  as level 1 alone would have. Blocks are added until ``race_step`` promotes or drops; a promotion is then
  confirmed on further blocks (held-out seeds: trial indices never used to decide it) and requires decisions
  the mechanism actually changed (``Hook-Effects``).

Only the top-level loop writes the store's ``main``; a nested window's winners are marked ``confirmed`` in
their trailers and stay active for the rest of that window only. Nothing here knows which k it is.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from recur.core.budget import Budget
from recur.core.hooks import VETO_ONLY, ActiveMechanism, HookRunner, replay_changes
from recur.core.loop import Loop, StepContext, derive_seed, drive
from recur.core.records import OK, Candidate, Decision, Outcome, Trial
from recur.core.stats import bootstrap_ci, first_promoting_look, race_step
from recur.levels.runtime import Runtime
from recur.levels.window import (Lineage, WindowResult, WindowStart, close_policy, make_policy, observed_best,
                                 sum_hook_counts, window_hook_counts)

UNSAFE = "unsafe"
INACTIVE = "inactive"
SCREENED = "screened"
SHORTLISTED = "shortlisted"
BUDGET = "budget"
INCUMBENT = "incumbent"
UNRACED = "unraced"  # passed the gate and the dry run, but no race could reach a verdict and no screen vouched for it
UNFINISHED = "unfinished"  # a race the window's end stopped before a verdict; the next window continues it
FREE = (UNSAFE, INACTIVE, SCREENED, SHORTLISTED, UNRACED)
EXPLORE_PER_SLOT = 3  # candidates proposed since the last race, per shortlist slot, before a part-full list races
MAX_ERROR_RATE = 0.2
MAX_FREE = 3  # unsafe/inactive candidates in a row before an incumbent window moves the lineage on
DRY_RUN_DECISIONS = 30  # recent level-(k-1) decisions a dry run replays
MIN_DECISIONS = 6  # level-(k-1) decisions before the first candidate: a dry run on fewer judges a model-based
# mechanism before it has anything to model
KEEP_STATUSES = ("promoted", "applied")  # never demoted by a re-proposal


def since_last_move(history: list[Trial]) -> list[Trial]:
    """The steps after the last one that spent level-1 trials (a race, its continuation or an incumbent window):
    what level k judged against the lineage as it stands now. A screen or shortlist from before that step was
    measured from another best and another history, so it is no evidence about the present."""
    for pos in range(len(history) - 1, -1, -1):
        if int(history[pos].outcome.info.get("trials", 0) or 0) > 0:
            return history[pos + 1:]
    return history


def idle_streak(history: list[Trial]) -> tuple[int, int]:
    """(steps in a row that moved nothing, how many of them were wasted): unsafe, inactive, or a mechanism
    already judged since the lineage last moved (a repeat learns nothing new and only delays the next window)."""
    fresh = since_last_move(history)
    seen = [t.candidate.payload.get("mechanism") for t in fresh]
    idle = wasted = 0
    for pos in range(len(fresh) - 1, -1, -1):
        t = fresh[pos]
        if t.outcome.status not in FREE:
            break
        idle += 1
        wasted += t.outcome.status in (UNSAFE, INACTIVE, UNRACED) or seen[pos] in seen[:pos]
    return idle, wasted


def pick_shortlisted(history: list[Trial], shortlist: int) -> Trial | None:
    """The shortlisted candidate to race now, if any, once ``shortlist`` are waiting or ``EXPLORE_PER_SLOT`` per
    slot have been proposed since the last race: of those screened since the lineage last moved
    (``since_last_move``) the best-screened, and an older entry only when none is that fresh. A screen from
    before a race was measured from another best, so its difference does not rank against a fresh one (expiring
    old entries instead costs about 40% more screening per run: docs/protocol.md)."""
    used = {t.candidate.payload.get("shortlisted_from") for t in history}
    waiting = [t for t in history if t.outcome.status == SHORTLISTED and t.candidate.id not in used]
    if not waiting:
        return None
    fresh = {t.candidate.id for t in since_last_move(history)}
    since = 0
    for t in reversed(history):
        if t.candidate.payload.get("shortlisted_from") or t.outcome.info.get("race"):
            break
        since += 0 if t.candidate.payload.get(INCUMBENT) else 1
    if len(waiting) < shortlist and since < EXPLORE_PER_SLOT * shortlist:
        return None
    return max(waiting, key=lambda t: (t.candidate.id in fresh,
                                       t.outcome.metric if t.outcome.metric is not None else float("-inf"), t.candidate.id))


class WindowRunner(Protocol):
    level: int

    def run_window(self, scope: str, start: WindowStart, steps: int, **kw: Any) -> WindowResult: ...


class ExtraProposer(Protocol):
    """Proposes ready-made candidates (e.g. ports of lower-level mechanisms) instead of the policy."""

    def propose(self, level: int, step: int, history: list[Trial]) -> dict[str, Any] | None: ...


@dataclass
class RaceSettings:
    """How level k judges a candidate: child windows of ``child_len`` level-1 trials, raced in pairs."""

    child_len: int
    max_pairs: int = 16
    alpha: float = 0.05
    confirm: int = 2  # held-out pairs after a winning race
    screen: Any = None  # ScreenSettings: simulate the candidate before racing it (None: race every candidate)


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


def level_space(rt: Runtime, level: int) -> dict[str, dict[str, Any]]:
    """The search space a level's proposals live in: the task's parameters at level 1, mechanism specs above."""
    if level == 1:
        return rt.task.space()
    from recur.mechanism_store.builtin import BUILTIN_FAMILIES

    return family_space(BUILTIN_FAMILIES)


def recorded_decisions(rt: Runtime, lineage: Lineage, level: int, limit: int = DRY_RUN_DECISIONS) -> list[dict[str, Any]]:
    """Level ``level``'s recent decisions on ``lineage``, rebuilt for replay (context with its history)."""
    trials = rt.trials_of(lineage.trail.get(level, ()))
    chosen = [pos for pos, t in enumerate(trials) if t.candidate.payload.get("decision")][-limit:]
    if not chosen:
        return []
    space = level_space(rt, level)
    first = max(0, chosen[0] - 100)
    records = [t.as_record() for t in trials[first:chosen[-1]]]
    out = []
    for pos in chosen:
        t = trials[pos]
        d = t.candidate.payload["decision"]
        history = records[max(0, pos - 100 - first):pos - first]
        out.append({"context": {**d["context"], "space": space, "history": history}, "offered": d["offered"],
                    "seed": d["seed"], "accept": t.decision.info.get("accept")})
    return out


def without_slug(mechanisms: list[ActiveMechanism], slug: str) -> list[ActiveMechanism]:
    return [m for m in mechanisms if m.name.rsplit("-", 1)[0] != slug]


@dataclass
class OuterState:
    start: WindowStart  # the lineage and the mechanisms active at every level below this one


class OuterLoop(Loop):
    """One window of level k's search: what ``spec`` (the level) holds, plus this window's state and policy."""

    def __init__(self, spec: "LevelK", state: OuterState, policy, end_index: int | None = None):
        from recur.mechanism_store.builtin import BUILTIN_FAMILIES

        self.spec, self.state, self.policy, self.end_index = spec, state, policy, end_index
        self.rt, self.level, self.child, self.race = spec.rt, spec.level, spec.child, spec.race
        self.families = BUILTIN_FAMILIES
        self.space = family_space(self.families)

    def hook_delta(self) -> dict:
        return self.policy.hooks.take_delta() if self.policy else {}

    @property
    def lineage(self) -> Lineage:
        return self.state.start.lineage

    def next_seed(self) -> int:
        """The seed of this level's next step: from how many steps it has taken on the line (``history``: a
        race continued across windows counts once), never from a scope. Level k then draws the same seeds alone
        or inside level k+1's windows and arms, as level 1 does from its trial index."""
        return derive_seed(self.rt.seed, f"L{self.level}", len(self.history()))

    def history(self) -> list[Trial]:
        """This level's steps on the lineage: the whole run's, not just this window's, with a race that windows
        of the level above cut into parts shown once, as its latest part. Level k then sees the same history
        whether it runs alone or inside level k+1's windows (a level k+1 that changes nothing is level k alone)."""
        trials = self.rt.trials_of(self.lineage.trail.get(self.level, ()))
        continued = {t.candidate.payload.get("continues") for t in trials}
        return [t for t in trials if t.candidate.id not in continued]

    # ------------------------------------------------------------ propose
    def propose(self, ctx: StepContext) -> Candidate:
        from recur.levels.diagnosis import diagnose
        from recur.mechanism_store.builtin import render

        rt, k = self.rt, self.level
        history = self.history()
        idle, wasted = idle_streak(history)
        if (not self.fits_pair(self.lineage) or self.policy is None
                or len(recorded_decisions(rt, self.lineage, k - 1, limit=MIN_DECISIONS)) < MIN_DECISIONS):
            return Candidate(ctx.trial_id, k, INCUMBENT, {"incumbent": True}, ctx.seed)
        waiting = self.unfinished_race(history)
        if waiting is not None:  # a race the previous window's end cut off goes on where it stopped
            return _again(ctx, waiting, seed=waiting.candidate.seed, continues=waiting.candidate.id,
                          race_seed=waiting.candidate.payload.get("race_seed", waiting.candidate.seed))
        best = self.next_shortlisted(history)
        if best is not None:
            return _again(ctx, best, shortlisted_from=best.candidate.id)
        if wasted >= MAX_FREE or idle >= self.explore_cap():
            return Candidate(ctx.trial_id, k, INCUMBENT, {"incumbent": True}, ctx.seed)
        for extra in self.spec.extra:
            ready = extra.propose(k, ctx.step, history)
            if ready is not None:
                return self._candidate(ctx, ready)
        child_records = [t.as_record() | {"candidate": {"payload": t.candidate.payload}}
                         for t in rt.trials_of(self.lineage.trail.get(k - 1, ())[-60:])]
        tried = [t for t in history if t.outcome.ok and t.candidate.kind in self.families]
        incumbent = (tried[-1].candidate.payload.get("params") if tried else None) or default_point(self.families, "tabu")
        context = {
            "level": k, "step": len(history), "space": self.space, "frozen": [], "guidance": [],
            "incumbent": incumbent, "best_metric": max((t.outcome.metric for t in tried), default=None),
            "maximize": True, "history": [t.as_record() for t in history[-50:]],
            "diagnosis": diagnose(child_records, k - 1),
            "families": {f: {"summary": s["summary"], "hooks": s["hooks"], "answers": s["answers"]} for f, s in self.families.items()},
            "active": [m.name for m in self.state.start.active.get(k - 1, [])],
        }
        proposal, _, decision = self.policy.choose(context, ctx.seed, ctx.trial_id)
        params = dict(proposal["payload"].get("params", {}))
        family = params.get("family") or "tabu"
        source = proposal["payload"].get("source")
        if not source:
            source = render(family, family_params({**default_point(self.families, family), **incumbent, **params, "family": family}))
        return self._candidate(ctx, {"family": family, "params": params, "source": source,
                                     "diagnosis": proposal.get("rationale") or ", ".join(context["diagnosis"]["tags"]),
                                     "model": getattr(self.policy.backend, "name", "?"), "parent": None},
                               decision)

    def unfinished_race(self, history: list[Trial]) -> Trial | None:
        """The last race on the lineage if a window's end stopped it before a verdict (and nothing continued it).
        Level k run in windows is then level k in one piece: a race spans the windows it needs."""
        for t in reversed(history):
            raced = "pairs" in t.outcome.info or t.candidate.payload.get("continues")
            if t.candidate.payload.get(INCUMBENT) or not raced:
                continue  # incumbent windows and candidates stopped before a race (gate, dry run, screen)
            return t if t.outcome.info.get(UNFINISHED) else None  # the last race, whatever its verdict
        return None

    def screens(self) -> bool:
        """Whether this level screens its candidates on simulated level k-1 before racing them."""
        return self.race.screen is not None and hasattr(self.child, "screen")

    def verdict_trials(self) -> int:
        """Level-1 trials a fresh race needs before it can promote: its first promoting look and the held-out
        pairs, two child windows a pair (60 at level 2 and 240 at level 3 with the defaults)."""
        return (first_promoting_look(self.race.alpha, self.race.max_pairs) + self.race.confirm) * 2 * self.race.child_len

    def explore_cap(self) -> int:
        """Steps in a row that may move nothing before an incumbent window moves the lineage: screened and
        shortlisted candidates cost no level-1 trial and bring the first race sooner (the shortlist fills or
        its explore limit is reached), so with a shortlist the level may propose until that limit; unsafe and
        inactive ones still stop at ``MAX_FREE``."""
        screen = self.race.screen
        return max(MAX_FREE, EXPLORE_PER_SLOT * screen.shortlist) if screen is not None else MAX_FREE

    def next_shortlisted(self, history: list[Trial]) -> Trial | None:
        """The shortlisted candidate to race now, if any (``pick_shortlisted``). Screening is free of level-1
        trials and racing is not, so the level looks at several candidates on cheap evidence and spends real
        trials on the most promising first."""
        screen = self.race.screen
        return None if screen is None else pick_shortlisted(history, screen.shortlist)

    def _candidate(self, ctx: StepContext, spec: dict[str, Any], decision: dict[str, Any] | None = None) -> Candidate:
        rt, k = self.rt, self.level
        report = rt.gate(spec["source"])
        slug = spec.get("slug") or spec["family"]
        meta = {"Model": spec.get("model"), "Family": spec["family"], "Diagnosis": spec.get("diagnosis")}
        if spec.get("parent"):  # recursive bootstrapping goes through the store's port operation
            info = rt.store.port(spec["parent"], k - 1, source=spec["source"], **meta)
        else:
            info = rt.store.add_candidate(k - 1, slug, spec["source"], trailers=meta)
        payload: dict[str, Any] = {"params": spec.get("params", {}), "mechanism": info.name, "branch": info.branch,
                                   "slug": slug, "hooks": report.hooks, "family": spec["family"]}
        if decision:
            payload["decision"] = decision  # level k+1 replays it in its dry run
        if self.race.screen is not None and self.race.screen.shortlist > 1:
            payload["shortlist"] = True  # screened, then held until the best of the shortlist races
        if spec.get("parent"):
            payload["port_of"] = spec["parent"]
        if not report.passed:
            payload["unsafe"] = report.summary()
        return Candidate(ctx.trial_id, k, spec["family"], payload, ctx.seed, parent=spec.get("parent"))

    # ----------------------------------------------------------- evaluate
    def arms(self, payload: dict[str, Any]) -> tuple[ActiveMechanism, dict[int, list[ActiveMechanism]], dict[int, list[ActiveMechanism]]]:
        """The candidate, and the active sets of the candidate arm and the incumbent arm."""
        k = self.level
        mech = ActiveMechanism(payload["mechanism"], self.rt.mechanism_source(payload["mechanism"]),
                               list(payload["hooks"]), candidate=True)
        base = self.state.start.active
        return mech, {**base, k - 1: without_slug(base.get(k - 1, []), payload["slug"]) + [mech]}, base

    def dry_run(self, mech: ActiveMechanism, active: list[ActiveMechanism]) -> dict[str, int]:
        """Replay level k-1's recent decisions with and without the candidate: how many it would change."""
        decisions = recorded_decisions(self.rt, self.lineage, self.level - 1)
        invoker = self.rt.invoker_factory(active) if self.rt.invoker_factory else None
        try:
            changed = replay_changes(HookRunner(active, invoker), mech.name, decisions)
        finally:
            if invoker is not None and hasattr(invoker, "close"):
                invoker.close()
        return {"decisions": len(decisions), "changed": changed}

    def _block(self, cid: str, tag: str, lin: Lineage, with_mech: dict, base: dict,
               seed: int) -> tuple[dict[str, Any], WindowResult, Lineage, dict]:
        """One block of the race: a candidate window and an incumbent window, one after the other on the
        lineage, in a seeded random order. Each window's best trial is measured from the best the lineage had
        when the block began, so going second is no handicap on average, and neither window repeats the other:
        every trial moves the search on."""
        n, maximize = self.race.child_len, self.rt.task.maximize
        order = [("cand", with_mech), ("ctrl", base)]
        if derive_seed(seed, "arm-order", tag) % 2:
            order.reverse()
        windows: dict[str, WindowResult] = {}
        cur = lin
        lower = _below(base, self.level - 1)
        for arm, active in order:
            res = self.child.run_window(f"{cid}/{tag}/{arm}", WindowStart(cur, {**active, **lower}), n)
            windows[arm] = res
            if res.final is not None:
                cur = res.final.lineage
                lower = _below(res.final.active, self.level - 1)
            if res.steps < n:
                break  # the budget ran out inside the block
        cand, ctrl = windows["cand"], windows.get("ctrl")
        cand_gain = _gain_from(cand, lin.best, maximize)
        ctrl_gain = _gain_from(ctrl, lin.best, maximize) if ctrl is not None else 0.0
        pair = {"cand_gain": cand_gain, "ctrl_gain": ctrl_gain, "diff": (cand_gain - ctrl_gain) / n,
                "diff_per_second": _per_second(cand_gain, cand) - _per_second(ctrl_gain, ctrl),  # the GPU-hour view
                "first": order[0][0],
                "cand_trials": cand.trials, "ctrl_trials": ctrl.trials if ctrl is not None else 0,
                "cand_seconds": cand.seconds, "ctrl_seconds": ctrl.seconds if ctrl is not None else 0.0,
                "complete": ctrl is not None and cand.steps == ctrl.steps == n}
        return pair, cand, cur, lower

    def evaluate(self, candidate: Candidate, budget: Budget) -> Outcome:
        p = candidate.payload
        rt = self.rt
        if p.get(INCUMBENT):
            n = min(self.race.child_len, max(1, self.room_at(self.lineage)))
            res = self.child.run_window(f"{candidate.id}/inc", self.state.start, n)
            assert res.final is not None
            return Outcome(OK, metric=res.gain(rt.task.maximize) / max(1, res.steps),
                           cost={"trials": res.trials, "seconds": res.seconds},
                           info={INCUMBENT: True, "lineage": res.final.lineage.to_json(), "trials": res.trials,
                                 "steps": res.steps, "seconds": res.seconds,
                                 "lower_active": _names(_below(res.final.active, self.level - 1))})
        if p.get("unsafe"):
            return Outcome(UNSAFE, info={"gate": p["unsafe"], "trials": 0})
        mech, with_mech, base = self.arms(p)
        prior = self.rt.trials_of([p["continues"]])[0].outcome.info if p.get("continues") else None
        if prior is not None:
            return self._race(candidate, budget, mech, with_mech, base, prior["dry_run"], prior.get("screen"), prior)
        against = [m.name for m in base.get(self.level - 1, [])]
        listed = self.rt.trials_of([p["shortlisted_from"]])[0].outcome.info if p.get("shortlisted_from") else None
        if listed is not None and listed.get("against") == against:
            # nothing it was judged against has changed since it was shortlisted: its dry run and screen stand
            return self._race(candidate, budget, mech, with_mech, base, listed["dry_run"], listed["screen"], None)
        dry = self.dry_run(mech, with_mech[self.level - 1])
        if dry["changed"] == 0:
            return Outcome(INACTIVE, info={"dry_run": dry, "trials": 0,
                                           "reason": f"would change none of {dry['decisions']} recorded decisions"})
        if not self.screens() and self.rt.budget.remaining("trials") < self.verdict_trials():
            # raced without a possible verdict, an unscreened candidate would only perturb level k-1 half of the
            # time, on no evidence (seed 100: level 3's such races at 100 trials left level 2 behind in 3 of 3 runs)
            return Outcome(UNRACED, info={"dry_run": dry, "trials": 0, "reason": (
                f"not raced: a race needs {self.verdict_trials()} level-1 trials to reach a verdict, "
                f"{self.rt.budget.remaining('trials'):.0f} are left, and no screen vouches for it meanwhile")})
        screened = None
        if self.screens():
            screened = self.child.screen(self.lineage, with_mech[self.level - 1], base.get(self.level - 1, []),
                                         self.race.screen)
            from recur.levels.screen import screen_reason

            verdict = screen_reason(screened)
            if not screened["passed"]:
                return Outcome(SCREENED, metric=screened["diff"], info={"dry_run": dry, "screen": screened, "trials": 0,
                                                                        "reason": verdict})
            if p.get("shortlist"):
                return Outcome(SHORTLISTED, metric=screened["diff"], info={"dry_run": dry, "screen": screened,
                                                                           "trials": 0, "reason": verdict,
                                                                           "against": against})
        return self._race(candidate, budget, mech, with_mech, base, dry, screened, None)

    def _race(self, candidate: Candidate, budget: Budget, mech: ActiveMechanism, with_mech: dict, base: dict,
              dry: dict[str, Any], screened: dict[str, Any] | None, prior: dict[str, Any] | None) -> Outcome:
        """Blocks of the race, from where ``prior`` (the same race, stopped by a window's end) left it."""
        lin = self.lineage
        seed = int(candidate.payload.get("race_seed", candidate.seed))
        pairs: list[dict[str, Any]] = list(prior["pairs"]) if prior else []
        confirm: list[dict[str, Any]] = list(prior["confirm"]) if prior else []
        new_pairs: list[dict[str, Any]] = []
        cand_windows: list[WindowResult] = []
        lower = _below(base, self.level - 1)
        step = race_step([x["diff"] for x in pairs], self.race.alpha, self.race.max_pairs, seed=seed)
        used = len(pairs) + len(confirm)
        cut = False
        # Blocks follow one another on the lineage: each starts where the previous one ended, and every trial
        # of either arm is a trial of the run's one line of search. Nothing is run twice, so the race costs
        # only what the candidate's own trials lose (or gain) against the incumbent's.
        while used < self.race.max_pairs + self.race.confirm:
            racing = used < self.race.max_pairs and step.decision == "continue"
            if not racing and (step.decision != "promote" or len(confirm) >= self.race.confirm):
                break
            if not self.fits_pair(lin):
                # the window ends before the race does: the next window of this level continues it, unless the
                # run's budget (not the window) is what is left too short
                cut = self.rt.budget.remaining("trials") >= 2 * self.race.child_len
                break
            pair, cand, lin, lower = self._block(candidate.id, f"p{used}" if racing else f"h{used}",
                                                 lin, {**with_mech, **lower}, {**base, **lower}, seed)
            used += 1
            cand_windows.append(cand)
            if not pair["complete"]:  # the budget ran out inside the block: it does not count
                break
            new_pairs.append(pair)
            if racing:
                pairs.append(pair)
                step = race_step([x["diff"] for x in pairs], self.race.alpha, self.race.max_pairs, seed=seed)
            else:
                confirm.append(pair)
        counts = sum_hook_counts([w.hook_counts for w in cand_windows])
        before = prior or {}
        calls = {h: counts.get(f"{mech.name}\t{h}", {}).get("calls", 0) + before.get("hook_calls", {}).get(h, 0)
                 for h in mech.hooks}
        effects = {h: counts.get(f"{mech.name}\t{h}", {}).get("changed", 0) + before.get("hook_effects", {}).get(h, 0)
                   for h in mech.hooks}
        errors = sum(counts.get(f"{mech.name}\t{h}", {}).get("errors", 0) for h in mech.hooks) + before.get("hook_errors", 0)
        spent = sum(x["cand_trials"] + x["ctrl_trials"] for x in new_pairs)
        info = {"pairs": pairs, "confirm": confirm, "race": {"decision": step.decision, "p": step.p, "pairs": len(pairs)},
                "confirmed": bool(confirm) and len(confirm) == self.race.confirm
                and statistics.fmean(x["diff"] for x in confirm) > 0,
                "hook_calls": calls, "hook_effects": effects, "hook_errors": errors, "dry_run": dry, "screen": screened,
                "mechanism": mech.name, "lineage": lin.to_json(), "trials": spent, "steps": lin.index - self.lineage.index,
                "seconds": sum(x["cand_seconds"] + x["ctrl_seconds"] for x in new_pairs),
                "lower_active": _names(lower)}
        diffs = [x["diff"] for x in pairs]
        if cut:
            return Outcome(OK, metric=statistics.fmean(diffs) if diffs else 0.0, info={**info, UNFINISHED: True})
        if not pairs and budget.exhausted:
            return Outcome(BUDGET, metric=None, info=info)
        total = sum(calls.values())
        if sum(effects.values()) == 0 or (total and errors / total > MAX_ERROR_RATE):
            return Outcome(INACTIVE, metric=statistics.fmean(diffs) if diffs else None, info=info)
        return Outcome(OK, metric=statistics.fmean(diffs) if diffs else 0.0, info=info)

    def fits_pair(self, lin: Lineage) -> bool:
        """A pair needs a window's worth of lineage before the window's end and two windows of budget."""
        n = self.race.child_len
        return self.room_at(lin) >= n and self.rt.budget.remaining("trials") >= 2 * n

    def room_at(self, lin: Lineage) -> int:
        """Level-1 trials the window may still move ``lin`` (bounded by the window's end and the run's budget)."""
        left = self.rt.budget.remaining("trials")
        if self.end_index is not None:
            left = min(left, self.end_index - lin.index)
        return int(max(0, min(left, 10 ** 9)))

    # ------------------------------------------------------------- accept
    def accept(self, candidate: Candidate, outcome: Outcome, history: list[Trial]) -> Decision:
        if outcome.info.get(INCUMBENT):
            why = candidate.payload.get("why") or "no candidate ready to race"
            return Decision(False, f"incumbent window ({why})", {"status": INCUMBENT})
        if outcome.status != OK:
            reason = {UNSAFE: "failed the gate",
                      INACTIVE: "inactive: " + outcome.info.get("reason", "its hooks changed no decision (or mostly errored)"),
                      SCREENED: "screened out before any real trial: " + outcome.info.get("reason", ""),
                      SHORTLISTED: "shortlisted (races when it is the best-screened waiting candidate): "
                      + outcome.info.get("reason", ""), UNRACED: outcome.info.get("reason", UNRACED),
                      BUDGET: "budget ran out before a complete pair"}.get(outcome.status, outcome.status)
            return Decision(False, reason, {"status": outcome.status})
        info = outcome.info
        diffs = [p["diff"] for p in info["pairs"]]
        lo, hi = bootstrap_ci(diffs, candidate.seed)
        race = info["race"]
        if info.get(UNFINISHED):
            return Decision(False, f"race continues in the next window ({race['pairs']} pair(s) so far, "
                                   f"{len(info['confirm'])} held-out)", {"ci": [lo, hi], "p": race["p"], "status": "candidate"})
        passed = race["decision"] == "promote" and info["confirmed"]
        tested = "not tested at this count" if race["p"] is None else f"one-sided p = {race['p']:.3g}"
        why = f"race {race['decision']} after {race['pairs']} pair(s), {tested}, CI [{lo:.5f}, {hi:.5f}]"
        if race["decision"] == "promote":
            held = [p["diff"] for p in info["confirm"]]
            why += (f"; held-out {len(held)} pair(s) mean {statistics.fmean(held):+.5f}" if held else "; no room for held-out pairs")
        keep = passed
        line = self.history()
        # A promotion is a claim of evidence: an accept mechanism may veto one the gate grants, never grant one.
        asked = {"metric": outcome.metric, "status": outcome.status, "best_metric": None, "incumbent_metric": 0.0,
                 "default_keep": passed, "maximize": True, "step": len(line), VETO_ONLY: True}
        verdict = self.policy.hooks.accept(asked, [t.as_record() for t in line[-50:]], candidate.seed) if self.policy else None
        if verdict is not None and verdict != passed:
            keep, why = verdict, why + "; vetoed by an accept mechanism"
        status = ("promoted" if self.spec.top else "confirmed") if keep else "rejected"
        return Decision(keep, ("promote: " if keep else "reject: ") + why,
                        {"ci": [lo, hi], "p": race["p"], "status": status, "accept": asked})

    # ------------------------------------------------------------- record
    def record(self, trial: Trial) -> str | None:
        c, o, d = trial.candidate, trial.outcome, trial.decision
        lin = Lineage.from_json(o.info["lineage"]) if o.info.get("lineage") else self.lineage
        active = self.state.start.active
        if o.info.get("lower_active") is not None:  # what the windows below confirmed stays on the line
            lower = {int(lv): [ActiveMechanism(name, self.rt.mechanism_source(name), hooks) for name, hooks in ms]
                     for lv, ms in o.info["lower_active"].items()}
            active = {**{lv: ms for lv, ms in active.items() if lv >= self.level - 1}, **lower}
        if not c.payload.get(INCUMBENT):
            self._store_verdict(trial)
            if d.keep:
                mech, _, _ = self.arms(c.payload)
                k = self.level
                active = {**active, k - 1: without_slug(active.get(k - 1, []), c.payload["slug"])
                          + [replace(mech, candidate=False)]}
        self.state.start = WindowStart(lin.extend(self.level, [c.id]), active)
        return None

    def _store_verdict(self, trial: Trial) -> None:
        c, o, d = trial.candidate, trial.outcome, trial.decision
        store = self.rt.store
        info = store.info(c.payload["branch"])
        status = d.info.get("status", o.status if o.status in FREE else "rejected")
        pairs = o.info.get("pairs", [])
        trailers = {"Score": None if o.metric is None else f"{o.metric:.6g}",
                    "CI": json.dumps([round(x, 6) for x in d.info["ci"]]) if d.info.get("ci") else None,
                    "P-Value": None if d.info.get("p") is None else f"{d.info['p']:.4g}",
                    "Hook-Calls": ", ".join(f"{h}={n}" for h, n in o.info.get("hook_calls", {}).items()) or None,
                    "Hook-Effects": ", ".join(f"{h}={n}" for h, n in o.info.get("hook_effects", {}).items()) or None,
                    "Pairs": str(len(pairs)) if pairs else None,
                    "Screen": (f"{o.info['screen']['diff']:+.4g} per trial, p {o.info['screen']['p']:.3g}, "
                               f"{o.info['screen']['runs']} simulated runs") if o.info.get("screen") else None,
                    "Trials": str(o.info.get("trials", 0)),
                    "Trial": c.id}
        if info.status in KEEP_STATUSES:
            return  # a re-proposal never demotes what a run (or a user) promoted
        if d.keep and self.spec.top:
            store.promote(info.branch, **trailers)
        elif info.status != status or info.trailers.get("Trial") != c.id:
            store.update(info.branch, status, **trailers)


def _again(ctx: StepContext, trial: Trial, seed: int | None = None, **marks: Any) -> Candidate:
    """A new step for the candidate of an earlier ``trial`` (its race continued, or its shortlisted entry raced):
    the same mechanism and payload, without the earlier step's policy decision and shortlist flag. A continued
    race keeps its seed (``seed``): it is the same race, one step or several."""
    c = trial.candidate
    payload = {key: v for key, v in c.payload.items() if key not in ("decision", "shortlist")}
    return Candidate(ctx.trial_id, c.level, c.kind, {**payload, **marks}, ctx.seed if seed is None else seed,
                     parent=c.parent)


def _below(active: dict[int, list[ActiveMechanism]], level: int) -> dict[int, list[ActiveMechanism]]:
    """The active sets of the levels below ``level`` (what a window of ``level`` may confirm and pass on)."""
    return {lv: list(ms) for lv, ms in active.items() if lv < level}


def _names(active: dict[int, list[ActiveMechanism]]) -> dict[str, list]:
    return {str(lv): [[m.name, list(m.hooks)] for m in ms] for lv, ms in active.items()}


def _per_second(gain: float, window: WindowResult | None) -> float:
    """Gain of the task metric per second of trial time (0 for a window that spent none)."""
    return gain / window.seconds if window is not None and window.seconds > 0 else 0.0


def _gain_from(window: WindowResult, start: float | None, maximize: bool) -> float:
    """A window's gain measured from ``start`` (its block's starting best) instead of its own start."""
    return replace(window, start_metric=start).gain(maximize)


@dataclass
class LevelK:
    """Level k >= 2 as a window runner, over ``child`` (level k-1)."""

    rt: Runtime
    level: int
    child: WindowRunner
    race: RaceSettings
    top: bool = False
    extra: list[ExtraProposer] = field(default_factory=list)

    def run_window(self, scope: str, start: WindowStart, steps: int | None = None, **_: Any) -> WindowResult:
        """Move ``start``'s lineage forward by ``steps`` level-1 trials (None: until the run's budget ends)."""
        rt, k = self.rt, self.level
        policy = make_policy(rt, k, start.active.get(k, []))
        state = OuterState(WindowStart(start.lineage, {lv: list(ms) for lv, ms in start.active.items() if lv < k}))
        end = None if steps is None else start.lineage.index + steps
        loop = OuterLoop(self, state, policy, end)
        try:
            history = drive(loop, rt.trace, rt.run_id, scope, 10 ** 9, rt.budget, on_trial=rt.on_trial,
                            run_seed=rt.seed, seed_of=lambda _: loop.next_seed(),
                            stop=lambda: end is not None and state.start.lineage.index >= end)
        finally:
            close_policy(policy)
        rt.remember(history)
        lin = state.start.lineage
        return WindowResult(scope, start.lineage.best, lin.best, lin.best_sha,
                            trials=sum(int(t.outcome.info.get("trials", 0)) for t in history),
                            seconds=sum(float(t.outcome.info.get("seconds", 0.0)) for t in history),
                            hook_counts=window_hook_counts(rt, scope, k, start.active.get(k, [])),
                            final=WindowStart(lin, {**state.start.active, k: start.active.get(k, [])}),
                            steps=lin.index - start.lineage.index,
                            observed=observed_best(rt, start.lineage, lin, rt.task.maximize))
