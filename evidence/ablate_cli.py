"""``recur ablate`` (registered by the levels' entry point)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def ablate(
        groups: str = typer.Option("A,B,C,D", "--groups", help="Comma-separated: A = level 1, B = A + parameter guidance (level 1.5), C = B + level 2, D = A + level 2, E = D + level 3, F = C + level 3."),
        repeats: int = typer.Option(3, "--repeats", min=1, help="Runs per group, each from a fresh workspace with its own seed."),
        max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Level-1 trials per run, baselines included, the same for every group (default: the task's ablation budget, 100 on synthetic; else what the deepest group's default plan needs)."),
        task: str = typer.Option("synthetic", "--task", help="Task to optimise."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Task preset (gpt_pretrain: cpu-tiny, gpu)."),
        model: str = typer.Option("scripted", "--model", help="Model for every level. Default scripted (the non-LLM search baseline) so an ablation takes minutes; offline (embedded SmolLM2) or any litellm model string to compare with a model."),
        api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
        seed: int = typer.Option(0, "--seed", help="Seed of repeat 0; repeat r uses seed + r in every group."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Runs at once (one GPU each when GPUs exist; default: one per core for the synthetic task, else 1)."),
        window: int = typer.Option(3, "--window", min=1, help="Level-1 trials per level-2 window."),
        meta_window: int = typer.Option(4, "--meta-window", min=1, help="Candidates per window of level 2 and above."),
        max_pairs: int = typer.Option(16, "--max-pairs", min=1, help="Most window pairs a race adds per candidate."),
        alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="False promotion rate of the race."),
        trial_seconds: Optional[float] = typer.Option(None, "--trial-seconds", min=0.1, help="Training budget per trial (task default if unset)."),
        transfer_task: Optional[str] = typer.Option(None, "--transfer-task", help="Also re-evaluate every promoted mechanism on this task."),
        instances: Optional[int] = typer.Option(None, "--instances", min=1, help="Runs averaged per repeat, each with its own seed (on synthetic, its own surface), the same seeds in every group: less noise per repeat (default: the task's, 1 unless it sets one)."),
        no_heldout: bool = typer.Option(False, "--no-heldout", help="Skip re-evaluating promoted mechanisms on held-out seeds."),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Workspace folder (default: ./.recur)."),
    ) -> None:
        """Compare groups of levels under one harness; print and save the table (markdown, CSV, JSON)."""
        from recur.core.cli import UserError, console
        from recur.core.task import TaskError
        from recur.core.workspace import Workspace
        from recur.evidence.ablate import AblationError, AblationSpec, run_ablation, table_markdown
        from recur.levels.run import RunError

        spec = AblationSpec(groups=[g.strip().upper() for g in groups.split(",") if g.strip()], repeats=repeats,
                            max_trials=max_trials, task=task, preset=preset, model=model, api_base=api_base, seed=seed,
                            workers=workers, window=window, meta_window=meta_window, max_pairs=max_pairs, alpha=alpha,
                            trial_seconds=trial_seconds, transfer_task=transfer_task, heldout=not no_heldout,
                            instances=instances)
        out = console()
        root = Workspace(workdir).root / "ablations"

        def on_job(job: dict, n: int, total: int) -> None:
            delta = "-" if job["delta"] is None else f"{job['delta']:+.4f}"
            which = f" instance {job['instance']}" if spec.instances and spec.instances > 1 else ""
            out.print(f"[{n}/{total}] {job['group']} repeat {job['repeat']}{which}: Δ best {delta} in {job['trials']} "
                      f"level-1 trials, {len(job['promoted'])} promoted", highlight=False)

        try:
            spec.check()
            many = f" × {spec.instances} instances" if spec.instances and spec.instances > 1 else ""
            out.print(f"ablation {spec.id}: groups {','.join(spec.groups)} × {repeats} repeats{many} × {spec.max_trials} "
                      f"level-1 trials, {spec.workers} worker(s); results in {root / spec.id}", highlight=False)
            results = run_ablation(spec, root, on_job)
        except (AblationError, RunError, TaskError) as exc:
            raise UserError(str(exc)) from None
        typer.echo(table_markdown(results))
        out.print(f"saved {root / spec.id}/table.md, table.csv and results.json", highlight=False)
