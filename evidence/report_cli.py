"""``recur report``: plots and an HTML page of a run (registered into core's CLI by entry point).

matplotlib is imported only when the command runs, so ``recur --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        out: Path = typer.Option(..., "--out", help="Folder to write index.html and the PNG plots into (created if missing)."),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Workspace folder (default: ./.recur)."),
        run: Optional[str] = typer.Option(None, "--run", help="Run id (default: latest)."),
    ) -> None:
        """PNG plots (trials, lineage, hook calls, newest ablation and its best-so-far curves), an index.html showing them, and "What level 2 found" (found.md)."""
        from recur.core.cli import UserError
        from recur.evidence.report import ReportError, build

        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a folder", code=2)
        try:
            sections = build(workdir, out, run)
        except ReportError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
        for s in sections:
            if s.file:
                typer.echo(f"wrote {out / s.file}")
            else:
                typer.echo(f"left out {s.key}: {s.missing}")
        from recur.evidence.report import FOUND

        if (out / FOUND).is_file():
            typer.echo("")
            typer.echo((out / FOUND).read_text())
            typer.echo(f"wrote {out / FOUND}")
        typer.echo(f"report: {(out / 'index.html').resolve()}")
