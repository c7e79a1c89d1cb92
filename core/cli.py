"""The ``recur`` command. Core commands (status, export) live here; levels, the mechanism store and the
evidence tools add theirs through the ``recur.commands`` entry point group, so core imports none of them.

Heavy libraries (torch, litellm) are imported inside commands, never at start-up: ``recur --help`` stays fast.
"""
from __future__ import annotations

import signal
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Optional

import typer
from typer.exceptions import Abort, Exit

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import UsageError

app = typer.Typer(
    name="recur",
    help="Recursive, self-improving automated research: level 1 edits train.py, level 2 writes search "
    "mechanisms for level 1, level 3 improves level 2.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WorkdirOption = typer.Option(None, "--workdir", help="Workspace folder (default: the current directory's .recur/).")


class UserError(Exception):
    """An error with a message meant for the user: printed as one line, exit code 1 (2 for bad arguments)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def console():
    """A rich console; wide enough for the tables when output is not a terminal (pipes, CI logs)."""
    from rich.console import Console

    plain = Console()
    return plain if plain.is_terminal else Console(width=140)


def open_trace(workdir: Optional[Path]):
    from recur.core.trace import TraceStore
    from recur.core.workspace import Workspace

    ws = Workspace(workdir)
    if not ws.exists():
        raise UserError(f"no recur workspace at {ws.root} (run `recur run` there first, or pass --workdir)")
    return TraceStore(ws.trace_path)


@app.command()
def status(workdir: Optional[Path] = WorkdirOption, run: Optional[str] = typer.Option(None, help="Run id (default: latest).")) -> None:
    """Per level: trials, best metric, budget used, model spend and hook calls of the latest run."""
    from recur.core.report_tables import status_tables

    trace = open_trace(workdir)
    info = trace.run(run)
    if info is None:
        raise UserError("the workspace has no runs yet")
    out = console()
    for table in status_tables(trace, info):
        out.print(table)


@app.command()
def export(
    workdir: Optional[Path] = WorkdirOption,
    tsv: bool = typer.Option(True, "--tsv/--no-tsv", help="autoresearch's results.tsv format."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    run: Optional[str] = typer.Option(None, help="Run id (default: latest)."),
) -> None:
    """Level-1 trials as autoresearch's results.tsv: commit, val_bpb, memory_gb, status, description."""
    from recur.core.report_tables import results_tsv

    trace = open_trace(workdir)
    info = trace.run(run)
    if info is None:
        raise UserError("the workspace has no runs yet")
    text = results_tsv(trace, info["id"])
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def _register_plugins() -> None:
    for ep in sorted(entry_points(group="recur.commands"), key=lambda e: e.name):
        ep.load()(app)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so the same cleanup runs: the running trial's process group is
    killed, the run is marked interrupted, and what was committed stays."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_SIGNALS: list[int] = []  # the signals that stopped this process (typer swallows the exception into exit code 130)


def _raise_stopped(signum: int, _frame: Any) -> None:
    _SIGNALS.append(signum)
    raise Stopped(signum)


def _interrupted(exc: KeyboardInterrupt, argv: list[str] | None) -> int:
    """One line on how the run was stopped and how to continue it; the shell's exit code for the signal."""
    signum = exc.signum if isinstance(exc, Stopped) else (_SIGNALS[0] if _SIGNALS else signal.SIGINT)
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    args = sys.argv[1:] if argv is None else argv
    again = ("run the same `recur ablate` command again to continue it" if "ablate" in args
             else "`recur run --resume` continues where it stopped")
    print(f"recur: interrupted by {how}; every finished trial is kept, {again}", file=sys.stderr)
    return 128 + int(signum)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one clear line for user errors (exit 1) and bad arguments (exit 2)."""
    _register_plugins()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        if signum != signal.SIGINT or signal.getsignal(signum) is signal.default_int_handler:  # not if ignored
            signal.signal(signum, _raise_stopped)
    try:
        result = app(args=argv, standalone_mode=False, prog_name="recur")
        if _SIGNALS:  # typer returned 130 for the KeyboardInterrupt our handler raised
            return _interrupted(Stopped(_SIGNALS[0]), argv)
        return result if isinstance(result, int) else 0
    except Exit as exc:
        return exc.exit_code
    except Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            return _interrupted(cause, argv)
        print("recur: aborted", file=sys.stderr)
        return 130
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 0  # bare `recur` printed the help
        print(f"recur: error: {exc.format_message()}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"recur: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt as exc:
        return _interrupted(exc, argv)
    except Exception as exc:  # a bug or an unforeseen environment problem: one line, details to a file
        report = _write_crash_report()
        print(f"recur: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              f" (full report: {report}; committed trials and store branches are kept, `recur run --resume` continues)",
              file=sys.stderr)
        return 1


def _write_crash_report() -> str:
    """Save the traceback where the user can attach it to a bug report, instead of printing it."""
    import traceback

    from recur.core.workspace import default_cache_dir

    try:
        folder = default_cache_dir() / "crash-reports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("crash-%Y%m%d-%H%M%S.txt")
        path.write_text(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
        return str(path)
    except OSError:
        return "unavailable (cache folder not writable)"


if __name__ == "__main__":  # `python -m recur.core.cli`: run the imported module's main, so that the errors other
    # modules raise (recur.core.cli.UserError) are the classes main catches, not copies living in __main__
    from recur.core.cli import main as imported_main

    sys.exit(imported_main())
