"""Setting up and running one ``recur run``: workspace, lock, trace, task repo, baseline, then the level stack.

Resume (``--resume``) reopens the latest unfinished run with its stored configuration; the driver replays
finished trials from the trace and re-runs the one that was running, so no trial is lost or counted twice.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from recur.core.budget import Budget
from recur.core.stats import keep_threshold, noise_sigma
from recur.core.task import Task, load_task
from recur.core.trace import TraceStore, charged_trials
from recur.levels.gitrepo import TaskRepo
from recur.levels.runtime import Runtime
from recur.levels.window import Level1, Lineage, WindowResult, WindowStart
from recur.core.workspace import Workspace, default_cache_dir


class RunError(Exception):
    """A run cannot start or continue (bad options, nothing to resume); one clear line for the user."""


@dataclass
class RunOptions:
    levels: int = 1
    task: str = "gpt_pretrain"
    preset: str | None = None
    model: str = "offline"
    api_base: str | None = None
    level_models: dict[str, str] = field(default_factory=dict)
    max_trials: int | None = None  # None: 20 at level 1, 50 with outer levels (baselines included)
    trial_seconds: float | None = None
    max_seconds: float | None = None
    max_tokens: float | None = None
    max_usd: float | None = None
    seed: int = 0
    workers: int = 1
    executor: str = "local"  # local: trial slots on this machine; ray: Ray tasks (core/ray_pool.py)
    ray_address: str | None = None  # None with ray: a local cluster started and stopped by the run
    baseline_repeats: int = 3  # at least 3: the keep threshold is 2 sigma of these
    min_delta: float = 0.0
    data: str | None = None
    window: int = 3  # level-1 trials per window
    meta_window: int = 4  # a level-k window is window * meta_window**(k-1) level-1 trials
    max_pairs: int = 16  # a race adds candidate/incumbent window pairs up to this many
    alpha: float = 0.05  # the race's false promotion rate
    confirm_pairs: int = 2  # held-out pairs that confirm a race's winner
    screen_seeds: int = 8  # simulated paired runs per kind of screen objective before a race (0: no screen)
    screen_horizon: int = 30  # simulated level-1 trials per screen run
    screen_alpha: float = 0.25  # one-sided p a candidate must reach on the screen (a filter of harm: racing is cheap)
    shortlist: int = 4  # screen-passing candidates held before the best-screened one races
    proposals: int = 3  # proposals per step at every level, so filter and select have something to decide
    llm_timeout: float = 120.0  # seconds per model request; a slower reply is retried like a transport error
    apply: list[str] = field(default_factory=list)  # built-in mechanisms active from the start: NAME[@LEVEL]

    def plan(self) -> tuple[int, str]:
        """(level-1 trials of the whole run, printable plan); PlanError if it cannot fit."""
        from recur.levels.stack import plan

        return plan(self.levels, self.max_trials, self.baseline_repeats, self.window, self.meta_window,
                    self.max_pairs, self.alpha)

    def budget(self) -> Budget:
        inf = math.inf
        return Budget(trials=self.plan()[0], seconds=self.max_seconds or inf, tokens=self.max_tokens or inf,
                      usd=self.max_usd or inf)


def new_run_id(seed: int) -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-s{seed}"


def task_for(opts: RunOptions) -> Task:
    options: dict[str, Any] = {"cache_dir": str(default_cache_dir()), "instance": opts.seed}
    if opts.data:
        options["data"] = opts.data
    return load_task(opts.task, opts.preset, options)


def parse_apply(entry: str) -> tuple[str, int]:
    """``NAME`` or ``NAME@LEVEL`` (level 1 by default) of a built-in mechanism; RunError if unknown."""
    from recur.mechanism_store.builtin import BUILTIN_FAMILIES

    name, _, level_text = entry.partition("@")
    if name not in BUILTIN_FAMILIES:
        raise RunError(f"--apply {entry}: unknown built-in mechanism {name!r}; one of {', '.join(sorted(BUILTIN_FAMILIES))}")
    if level_text and not (level_text.isdigit() and int(level_text) >= 1):
        raise RunError(f"--apply {entry}: the level after @ must be a number >= 1")
    return name, int(level_text or 1)


def apply_builtin(store: Any, entry: str) -> None:
    """Make a built-in mechanism active from the start, as ``recur mech apply`` would: a store branch with
    status ``applied``. Idempotent, so resume replays it."""
    from recur.mechanism_store.builtin import builtin_source

    name, level = parse_apply(entry)
    info = store.add_candidate(level, name, builtin_source(name),
                               trailers={"Model": "built-in", "Family": name, "Diagnosis": f"--apply {entry}"})
    store.promote(info.branch, status="applied")


class Run:
    """One run in a workspace. Use as a context manager: it holds the workspace lock."""

    def __init__(self, workdir: Path | None, opts: RunOptions | None, resume: bool,
                 on_trial: Callable[..., None] | None = None, reopen_finished: bool = False):
        self.ws = Workspace(workdir)
        self.ws.lock()
        try:
            self.trace = TraceStore(self.ws.trace_path)
            if resume:
                info = self.trace.run()
                if info is None:
                    raise RunError(f"nothing to resume in {self.ws.root}: no run has started there")
                if info["status"] not in ("running", "interrupted") and not reopen_finished:
                    raise RunError(f"run {info['id']} already {info['status']}; start a new run without --resume")
                self.run_id = info["id"]
                stored = info["config"]
                self.opts = RunOptions(**{k: v for k, v in stored.items() if k in RunOptions.__dataclass_fields__})
            else:
                if opts is None:
                    raise RunError("no run options given")
                from recur.levels.stack import PlanError

                try:
                    opts.max_trials = opts.plan()[0]
                except PlanError as exc:
                    raise RunError(str(exc)) from None
                task_for(opts)  # fail fast on an unknown task or preset
                for entry in opts.apply:
                    parse_apply(entry)
                self.opts = opts
                self.run_id = new_run_id(opts.seed)
            self.on_trial = on_trial
        except BaseException:
            self.ws.unlock()
            raise

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        rt = getattr(self, "rt", None)
        try:
            if rt is not None:
                rt.pool.close()  # a Ray cluster the run started is stopped with it
                if hasattr(rt.invoker_factory, "close"):
                    rt.invoker_factory.close()  # the run's warm sandbox workers
        finally:
            self.trace.close()
            self.ws.unlock()

    @staticmethod
    def _pool(opts: RunOptions) -> Any:
        from recur.core.executor import make_pool
        from recur.core.ray_pool import RayUnavailable

        try:
            return make_pool(opts.executor, opts.workers, opts.ray_address)
        except (ValueError, RayUnavailable) as exc:
            raise RunError(str(exc)) from None

    # ------------------------------------------------------------------
    def setup(self) -> Runtime:
        opts = self.opts
        task = task_for(opts)
        run_dir = self.ws.run_dir(self.run_id)
        repo_dir = run_dir / "work"
        branch = f"recur/{self.run_id}"
        repo = TaskRepo(repo_dir) if (repo_dir / ".git").exists() else TaskRepo.create(repo_dir, task.populate, branch)
        task.prepare(repo_dir, default_cache_dir())
        stored = self.trace.run(self.run_id)
        if stored is None:
            pins = task.pins(repo_dir)
            config = {**asdict(opts), "maximize": task.maximize, "metric": task.metric_name, "pins": pins,
                      "initial_commit": repo.head(branch),
                      "budget": {u: (None if math.isinf(v) else v) for u, v in
                                 [("trials", opts.max_trials), ("seconds", opts.max_seconds or math.inf),
                                  ("tokens", opts.max_tokens or math.inf), ("usd", opts.max_usd or math.inf)]}}
            self.trace.start_run(self.run_id, config, opts.seed)
            stored = self.trace.run(self.run_id)
        else:
            self.trace.start_run(self.run_id, stored["config"], opts.seed)
        budget = opts.budget()
        done = [t for t in self.trace.trials(self.run_id, level=1) if t["status"] != "running"]
        calls = self.trace.llm_calls(self.run_id)
        budget.used.update(trials=float(charged_trials(done)), seconds=sum(t["seconds"] or 0.0 for t in done),
                           tokens=float(sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in calls)),
                           usd=sum(c["cost_usd"] or 0.0 for c in calls))
        self.config = stored["config"]
        from recur.core.sandbox_pool import SandboxCache
        from recur.levels.backends import backend_factory
        from recur.mechanism_store.store import MechanismStore

        store = MechanismStore(self.ws.store_path)
        for entry in opts.apply:
            apply_builtin(store, entry)
        return Runtime(
            run_id=self.run_id, seed=opts.seed, trace=self.trace, task=task, repo=repo,
            pool=self._pool(opts), budget=budget, run_dir=run_dir, pins=self.config["pins"],
            trial_seconds=opts.trial_seconds, min_delta=opts.min_delta,
            backend_factory=backend_factory(opts, self.trace, self.run_id, budget), invoker_factory=SandboxCache(),
            settings={"workers": opts.workers, "window": opts.window, "meta_window": opts.meta_window,
                      "max_pairs": opts.max_pairs, "alpha": opts.alpha, "proposals": opts.proposals,
                      "levels": opts.levels},
            on_trial=self.on_trial, store=store,
        )

    def baseline(self, rt: Runtime) -> WindowResult:
        """Repeat the unmodified files with different seeds: the start metric and the noise threshold."""
        scope = f"{self.run_id}/baseline"
        start = self.config["initial_commit"]
        result = Level1(rt).run_window(scope, WindowStart(Lineage(start, None, start)), steps=self.opts.baseline_repeats,
                                       branch=rt.main_branch, baseline_steps=self.opts.baseline_repeats)
        metrics = [r.outcome.metric for r in self.trace.scope_rows(scope) if r.finished and r.outcome.ok]
        sigma = noise_sigma(metrics)
        rt.threshold = keep_threshold(sigma, self.opts.min_delta)
        rt.settings["sigma"] = sigma
        self.trace.event(self.run_id, "noise", f"baseline sigma {sigma:.5f}, keep threshold {rt.threshold:.5f}",
                         level=1, data={"metrics": metrics, "sigma": sigma, "threshold": rt.threshold})
        if result.best_metric is None:
            raise RunError("every baseline trial failed: the unmodified task does not run; see "
                           f"{rt.run_dir / 'logs'} for the logs")
        return result

    def execute(self) -> dict[str, Any]:
        rt = self.rt = self.setup()
        try:
            base = self.baseline(rt)
            assert base.final is not None
            total, _ = self.opts.plan()
            if self.opts.levels == 1:
                active = {1: rt.store_active(1)} if rt.store is not None else {}
                result = Level1(rt).run_window(f"{self.run_id}/L1", WindowStart(base.final.lineage, active),
                                               steps=total - self.opts.baseline_repeats, branch=rt.main_branch)
            else:
                from recur.levels.stack import run_stack

                result = run_stack(rt, self.opts, base)
            stopped_by = rt.budget.exhausted_by()
            status = "finished" if stopped_by in (None, "trials") else "budget"
            self.trace.finish_run(self.run_id, status)
            return {"run_id": self.run_id, "status": status, "stopped_by": stopped_by, "budget": rt.budget.describe(),
                    "start_metric": base.best_metric,
                    "best_metric": result.best_metric, "best_commit": result.best_sha,
                    "threshold": rt.threshold, "trials": int(rt.budget.used["trials"])}
        except BaseException:
            self.trace.finish_run(self.run_id, "interrupted")
            raise
