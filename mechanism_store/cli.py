"""``recur check`` and ``recur mech ...`` (registered into core's CLI by entry point)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

WORKDIR = typer.Option(None, "--workdir", help="Workspace folder (default: ./.recur).")


def _store(workdir: Optional[Path]):
    from recur.core.cli import UserError
    from recur.core.workspace import Workspace
    from recur.mechanism_store.store import MechanismStore, StoreError

    ws = Workspace(workdir)
    try:
        return MechanismStore(ws.store_path, create=False)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def _report_health(store) -> None:
    """Name corrupt branches and the user's uncommitted edits on stderr, so a listing is never silently partial."""
    for branch, why in sorted(store.corrupt.items()):
        typer.echo(f"recur: warning: {branch} is corrupt ({why}); it is left out, every other branch is intact", err=True)
    dirty = store.dirty_files()
    if dirty:
        typer.echo(f"recur: warning: the store's work tree has uncommitted edits ({', '.join(dirty[:5])}); recur "
                   f"commits around them and leaves them as they are", err=True)


def _guard(fn):
    """Turn store errors into one clear line."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from recur.core.cli import UserError
        from recur.mechanism_store.store import StoreError

        try:
            return fn(*args, **kwargs)
        except StoreError as exc:
            raise UserError(str(exc)) from None

    return wrapper


def register(app: typer.Typer) -> None:
    mech = typer.Typer(help="Browse and manage the mechanism store (git branches with trailers).", no_args_is_help=True)
    app.add_typer(mech, name="mech")

    @app.command()
    def check(
        target: str = typer.Argument(..., help="A mechanism module file, or a store branch/name."),
        max_examples: int = typer.Option(25, "--max-examples", min=1, help="Hypothesis examples per property."),
        seed: int = typer.Option(0, "--seed", help="Hypothesis seed."),
        workdir: Optional[Path] = WORKDIR,
    ) -> None:
        """Static policy, then property tests of every hook in the sandbox; exit 1 on any failure."""
        from recur.core.cli import UserError, console
        from recur.mechanism_store.gate import gate

        path = Path(target)
        if path.exists():
            source = path.read_text()
        else:
            source = _guard(lambda: _store(workdir).source(target))()
        report = gate(source, max_examples=max_examples, seed=seed)
        out = console()
        if report.violations:
            for v in report.violations:
                out.print(f"[red]FAIL[/red] static {v.rule} at {target}:{v.line}:{v.column}: {v.message}", highlight=False)
        else:
            out.print(f"[green]PASS[/green] static policy ({len(report.hooks)} hook(s): {', '.join(report.hooks)})")
        for p in report.properties:
            tag = "[green]PASS[/green]" if p.passed else "[red]FAIL[/red]"
            line = f"{tag} {p.hook}: {p.property}"
            if not p.passed:
                line += f" — {p.message}" + (f"\n      counterexample: {p.counterexample}" if p.counterexample else "")
            out.print(line, highlight=False)
        if not report.passed:
            raise UserError(f"{target} failed the gate")
        out.print("[green]passed[/green]: static policy and properties")

    @mech.command("list")
    @_guard
    def list_(level: Optional[int] = typer.Option(None, "--level"), status: Optional[str] = typer.Option(None, "--status"),
              workdir: Optional[Path] = WORKDIR) -> None:
        """Mechanism branches: name, level, status, score, hook calls, changed decisions, parent."""
        from rich.table import Table

        from recur.core.cli import console

        store = _store(workdir)
        rows = [(m.name, str(m.level), m.status, m.trailers.get("Score", "-"), m.trailers.get("Hook-Calls", "-"),
                 m.trailers.get("Hook-Effects", "-"), (m.parent or "-").split("/", 2)[-1]) for m in store.list(level, status)]
        _report_health(store)
        header = ("name", "level", "status", "score", "hook calls", "changed", "parent")
        if len(rows) > 200:  # a rich table of thousands of rows takes seconds: print aligned plain text instead
            widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
            lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
            typer.echo("\n".join(lines))
            return
        table = Table(title="mechanisms")
        for col in header:
            table.add_column(col)
        for r in rows:
            table.add_row(*r)
        console().print(table)

    @mech.command()
    @_guard
    def show(name: str, workdir: Optional[Path] = WORKDIR) -> None:
        """A mechanism's metadata and source."""
        from recur.core.cli import console

        store = _store(workdir)
        info = store.info(name)
        out = console()
        out.print(f"{info.branch}  ({info.sha[:10]})", highlight=False)
        for k, v in info.trailers.items():
            out.print(f"  {k}: {v}", highlight=False)
        out.print(store.source(name), highlight=False, markup=False)

    @mech.command()
    @_guard
    def diff(a: str, b: Optional[str] = typer.Argument(None), workdir: Optional[Path] = WORKDIR) -> None:
        """Unified diff of A against its base, or of A against B (same as `git -C .recur/store diff`)."""
        typer.echo(_store(workdir).diff(a, b))

    @mech.command()
    @_guard
    def lineage(name: str, workdir: Optional[Path] = WORKDIR) -> None:
        """The tree of Parent links through NAME, across levels, with scores and statuses."""
        from rich.tree import Tree

        from recur.core.cli import console

        store = _store(workdir)
        nodes = store.lineage(name)
        _report_health(store)
        root = None
        stack: list = []
        for depth, m in nodes:
            label = f"{m.name} [L{m.level}] {m.status} score={m.trailers.get('Score', '-')}"
            if root is None:
                if m.parent:  # the chain goes further up, but that branch is gone or unreadable
                    label += f" (parent {m.parent} is missing)"
                root = Tree(label)
                stack = [root]
                continue
            stack = stack[:depth]
            stack.append(stack[-1].add(label))
        console().print(root)

    @mech.command()
    @_guard
    def apply(name: str, level: int = typer.Option(..., "--level", min=1), workdir: Optional[Path] = WORKDIR) -> None:
        """Make NAME active at LEVEL by hand: ported there first if it belongs to another level."""
        store = _store(workdir)
        info = store.info(name)
        if info.level != level:
            info = store.port(info.branch, level, Diagnosis=f"applied by hand from {info.name}")
        store.promote(info.branch, status="applied")
        _report_health(store)
        typer.echo(f"{info.branch} is active at level {level}")

    @mech.command("eval")
    @_guard
    def eval_(
        target: str = typer.Argument(..., help="A mechanism module file, or a store branch/name."),
        level: int = typer.Option(1, "--level", min=1, help="The level whose search the mechanism changes."),
        task: str = typer.Option("synthetic", "--task", help="Task to judge it on."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Task preset."),
        model: str = typer.Option("scripted", "--model", help="Policy of the levels below (scripted, offline, or a litellm model)."),
        max_pairs: int = typer.Option(16, "--max-pairs", min=1, help="Most window pairs the race adds."),
        alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="False promotion rate of the race."),
        window: int = typer.Option(3, "--window", min=1, help="Level-1 trials per window."),
        seed: int = typer.Option(0, "--seed", help="Run seed."),
        screen_seeds: int = typer.Option(8, "--screen-seeds", min=0, help="Simulated paired runs per screen objective before the race (0: race without a screen, to measure the race alone)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        workdir: Optional[Path] = WORKDIR,
    ) -> None:
        """Judge a mechanism as the outer level would: gate, dry run, screen, race on paired windows, held-out pairs."""
        import json

        from recur.core.cli import UserError, console
        from recur.core.task import TaskError
        from recur.evidence.mech_eval import evaluate_mechanism
        from recur.levels.run import RunError, RunOptions

        opts = RunOptions(task=task, preset=preset, model=model, max_pairs=max_pairs, alpha=alpha, window=window, seed=seed,
                          screen_seeds=screen_seeds)
        try:
            result = evaluate_mechanism(target, level, opts, workdir)
        except (RunError, TaskError) as exc:
            raise UserError(str(exc)) from None
        keys = ("verdict", "pairs", "trials", "mean_diff", "ci", "p", "calls", "effects")
        if as_json:
            typer.echo(json.dumps({k: result.get(k) for k in keys} | {"reason": result.get("reason", result.get("gate"))}))
        else:
            out = console()
            out.print(f"verdict: {result['verdict']}", highlight=False)
            if result["verdict"] == "unsafe":
                out.print(result["gate"], highlight=False, markup=False)
            else:
                ci = result["ci"] or [float("nan")] * 2
                mean = "-" if result["mean_diff"] is None else f"{result['mean_diff']:+.5f}"
                p = "-" if result["p"] is None else f"{result['p']:.3g}"
                out.print(f"{result['reason']}\npairs {result['pairs']}, level-1 trials spent {result['trials']} "
                          f"(+{result['setup_trials']} baseline and warm-up), mean paired difference per trial {mean} "
                          f"95% CI [{ci[0]:.5f}, {ci[1]:.5f}], p {p}", highlight=False, markup=False)
                for hook in result["calls"]:
                    out.print(f"  {hook}: {result['calls'][hook]} calls, {result['effects'].get(hook, 0)} changed decisions",
                              highlight=False)
        if result["verdict"] == "unsafe":
            raise UserError(f"{target} failed the gate")
