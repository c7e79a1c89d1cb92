"""``recur run``: the command-line face of the level stack (registered into core's CLI by entry point)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _parse_level_models(values: list[str]) -> dict[str, str]:
    from recur.core.cli import UserError

    out = {}
    for item in values:
        level, sep, model = item.partition("=")
        if not sep or not level.isdigit() or not model:
            raise UserError(f"--level-model expects LEVEL=MODEL (e.g. 2=anthropic/claude-sonnet-4-5), got {item!r}", code=2)
        out[level] = model
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        levels: int = typer.Option(1, "--levels", min=1, max=8, help="How many levels to stack (1 = autoresearch)."),
        task: str = typer.Option("gpt_pretrain", "--task", help="Task to optimise (gpt_pretrain, synthetic, ...)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Task preset (gpt_pretrain: cpu-tiny, gpu)."),
        model: str = typer.Option("offline", "--model", help="Model for every level: offline (embedded SmolLM2, the default), scripted (non-LLM baseline), or any litellm model string."),
        api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server (vLLM, llama.cpp, ...)."),
        level_model: list[str] = typer.Option([], "--level-model", help="Per-level model override, LEVEL=MODEL (repeatable)."),
        max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Level-1 trials for the whole run, baselines included (default: 20 at --levels 1, 50 above)."),
        trial_seconds: Optional[float] = typer.Option(None, "--trial-seconds", min=0.1, help="Training budget per trial (task default if unset)."),
        max_seconds: Optional[float] = typer.Option(None, "--max-seconds", min=1, help="Stop after this much trial time."),
        max_usd: Optional[float] = typer.Option(None, "--max-usd", min=0, help="Stop when model spend reaches this."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Stop when model tokens (all levels) reach this."),
        llm_timeout: float = typer.Option(120.0, "--llm-timeout", min=0.1, help="Seconds per model request before it is retried."),
        seed: int = typer.Option(0, "--seed", help="Run seed: trial seeds and proposals derive from it."),
        workers: int = typer.Option(1, "--workers", min=1, help="Trials run at once (one GPU each when GPUs exist)."),
        executor: str = typer.Option("local", "--executor", help="local: trials as processes on this machine; ray: trials as Ray tasks on a cluster (pip install -e \".[ray]\")."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default with --executor ray: start a local one on 127.0.0.1 and stop it at the end)."),
        baseline_repeats: int = typer.Option(3, "--baseline-repeats", min=1, help="Repeats of the unmodified task to measure noise."),
        min_delta: float = typer.Option(0.0, "--min-delta", min=0, help="Smallest improvement that counts, besides 2 sigma of noise."),
        data: Optional[str] = typer.Option(None, "--data", help="Train on your own .txt/.md/.parquet files in this folder, or on a Hugging Face dataset's parquet shards: hf:OWNER/NAME[:PATTERN] (downloaded once, before the first trial)."),
        window: int = typer.Option(3, "--window", min=1, help="Level-1 trials per window (the unit an outer level races in pairs)."),
        meta_window: int = typer.Option(4, "--meta-window", min=1, help="A level-k window is window x meta-window^(k-1) level-1 trials."),
        max_pairs: int = typer.Option(16, "--max-pairs", min=1, help="Most candidate/incumbent window pairs a race adds before it drops the candidate."),
        alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="False promotion rate of the race (one-sided sign-flip test)."),
        screen_seeds: int = typer.Option(8, "--screen-seeds", min=0, help="Simulated paired runs per screen objective before a candidate races (0: race every candidate)."),
        screen_horizon: int = typer.Option(30, "--screen-horizon", min=1, help="Simulated level-1 trials per screen run."),
        screen_alpha: float = typer.Option(0.25, "--screen-alpha", min=1e-6, max=1.0, help="One-sided p a candidate must reach on the screen."),
        shortlist: int = typer.Option(4, "--shortlist", min=1, help="Candidates that passed the screen, held before the best-screened one races (1: race each at once)."),
        proposals: int = typer.Option(3, "--proposals", min=1, max=16, help="Proposals per step at every level (filter and select choose among them)."),
        apply: list[str] = typer.Option([], "--apply", help="Built-in mechanism active from the start, NAME[@LEVEL] (repeatable; e.g. freeze_guidance)."),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Workspace folder (default: ./.recur)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest interrupted run with its stored options."),
    ) -> None:
        """Run the level stack: level 1 trains and keeps better edits; levels 2+ search for mechanisms."""
        from recur.core.cli import UserError, console
        from recur.core.llm import LLMError
        from recur.core.task import TaskError
        from recur.core.trace import TraceError
        from recur.core.workspace import WorkspaceLocked
        from recur.levels.progress import Progress
        from recur.levels.run import Run, RunError, RunOptions

        opts = RunOptions(levels=levels, task=task, preset=preset, model=model, api_base=api_base,
                          level_models=_parse_level_models(level_model), max_trials=max_trials,
                          trial_seconds=trial_seconds, max_seconds=max_seconds, max_usd=max_usd, max_tokens=max_tokens,
                          llm_timeout=llm_timeout, seed=seed,
                          workers=workers, executor=executor, ray_address=ray_address, baseline_repeats=baseline_repeats, min_delta=min_delta,
                          data=_data_option(data), window=window, meta_window=meta_window,
                          max_pairs=max_pairs, alpha=alpha, proposals=proposals, apply=list(apply),
                          screen_seeds=screen_seeds, screen_horizon=screen_horizon, screen_alpha=screen_alpha,
                          shortlist=shortlist)
        out = console()
        try:
            with Progress(out) as progress, Run(workdir, None if resume else opts, resume, progress.on_trial) as r:
                progress.begin(r.run_id, r.opts, r.opts.plan()[1])
                summary = r.execute()
        except (RunError, TaskError, TraceError, WorkspaceLocked, LLMError) as exc:
            raise UserError(str(exc)) from None
        best, start = summary["best_metric"], summary["start_metric"]
        out.print(f"run {summary['run_id']} {summary['status']}: {summary['trials']} level-1 trials, "
                  f"baseline {start:.4f} -> best {best:.4f} (commit {summary['best_commit'][:7]}), "
                  f"keep threshold {summary['threshold']:.4f}")
        if summary["status"] == "budget":
            unit = summary["stopped_by"]
            b = summary["budget"][unit]
            out.print(f"stopped early: the {unit} budget is spent ({b['used']:.4g} of {b['limit']:.4g} {unit}); "
                      f"every finished trial is kept in the trace", highlight=False)


def _data_option(data: str | None) -> str | None:
    """A folder as an absolute path (the run may resume from elsewhere); an ``hf:`` dataset as written."""
    if not data:
        return None
    return data if data.startswith("hf:") else str(Path(data).expanduser().resolve())
