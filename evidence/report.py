"""``recur report``: PNG plots of a run and an ``index.html`` that shows them.

Everything here reads the trace (``.recur/trace.db``), the mechanism store (``.recur/store``) and the newest
ablation (``.recur/ablations/<id>/results.json``) and writes files; nothing is changed in the workspace.
matplotlib is imported inside the plotting functions (Agg backend, no pyplot state), so importing this module
stays cheap. A missing piece (no store, no hook calls, no ablation) omits its plot with a sentence saying why;
only a missing trace or a trace without runs is an error (``ReportError``).
"""
from __future__ import annotations

import html
import json
import statistics
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recur.core.records import FAILED_STATUSES, RUNNING

FOUND = "found.md"  # "What level 2 found", the markdown README quotes
PLOTS = ("trials.png", "lineage.png", "hook_calls.png", "ablation.png", "best_so_far.png")
LINEAGE_CAP = 40
HOOK_BAR_CAP = 60
SCOPE_LABEL_CAP = 30  # more windows than this: separators only, no per-window labels

STATUS_COLORS = {
    "promoted": "#2ca02c",
    "applied": "#17becf",
    "candidate": "#1f77b4",
    "rejected": "#d62728",
    "inactive": "#7f7f7f",
    "screened": "#bcbd22",
    "unsafe": "#9467bd",
}
NO_MECHANISM = "no mechanism"
DPI = 100


class ReportError(Exception):
    """The report cannot be made at all (no trace, no runs): one clear line."""


# --------------------------------------------------------------------------- data
@dataclass
class Section:
    """One plot of the report: the file written, or the sentence saying why it was left out."""

    key: str
    title: str
    file: str | None = None
    caption: str = ""
    missing: str | None = None


@dataclass
class ReportData:
    run: dict[str, Any]
    trials: list[dict[str, Any]]  # every trial of the run, oldest first
    hook_rows: list[dict[str, Any]]
    mechanisms: list[Any] | None = None  # MechanismInfo list, None when there is no readable store
    order: list[str] = field(default_factory=list)  # branch names, newest commit first
    store_missing: str | None = None
    ablation: dict[str, Any] | None = None
    ablation_path: Path | None = None
    ablation_missing: str | None = None

    @property
    def metric_name(self) -> str:
        return str(self.run["config"].get("metric") or "metric")

    @property
    def maximize(self) -> bool:
        return bool(self.run["config"].get("maximize", False))

    @property
    def level1(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["level"] == 1]


def _workspace_root(workdir: Path | str | None) -> Path:
    from recur.core.workspace import Workspace

    return Workspace(workdir).root


def load(workdir: Path | str | None, run_id: str | None = None) -> ReportData:
    """Everything the report needs, read once. Raises ReportError when there is no trace or no such run."""
    from recur.core.trace import TraceError, TraceStore

    root = _workspace_root(workdir)
    trace_path = root / "trace.db"
    if not trace_path.is_file():  # TraceStore would create an empty database: check first
        ablation_only = ReportData(run={"id": "(no run: ablation only)", "config": {}, "status": "-",
                                        "created": None, "finished": None}, trials=[], hook_rows=[])
        _load_ablation(ablation_only, root / "ablations")
        if ablation_only.ablation is None:
            raise ReportError(f"no recur trace at {trace_path} (run `recur run` there first, or pass --workdir)")
        ablation_only.run["config"] = {"task": ablation_only.ablation.get("task"), "metric": ablation_only.ablation.get("metric")}
        ablation_only.store_missing = "this workspace holds only an ablation (each run has its own workspace under .recur/ablations/)"
        return ablation_only
    try:
        trace = TraceStore(trace_path)
    except TraceError as exc:
        raise ReportError(str(exc)) from None
    try:
        run = trace.run(run_id)
        if run is None:
            raise ReportError(f"no run {run_id!r} in {trace_path}" if run_id else f"the trace {trace_path} has no runs yet")
        data = ReportData(run=run, trials=trace.trials(run["id"]), hook_rows=trace.hook_calls(run["id"]))
    finally:
        trace.close()
    _load_store(data, root / "store")
    _load_ablation(data, root / "ablations")
    return data


def _load_store(data: ReportData, path: Path) -> None:
    from recur.mechanism_store.store import MechanismStore

    if not (path / ".git").exists():
        data.store_missing = f"there is no mechanism store at {path} yet (a run with --levels 2 or more creates one)"
        return
    try:
        store = MechanismStore(path, create=False)
        data.mechanisms = store.list()
        refs = store.repo.git.for_each_ref("--sort=-committerdate", "--format=%(refname:strip=2)", "refs/heads/mech/")
        data.order = refs.split()
    except Exception as exc:  # a corrupt store must not break the rest of the report
        data.mechanisms = None
        data.store_missing = f"the mechanism store at {path} could not be read: {_one_line(exc)}"
        return
    if not data.mechanisms:
        data.store_missing = f"the mechanism store at {path} has no mechanism branches yet"


def _load_ablation(data: ReportData, folder: Path) -> None:
    found = [d for d in folder.iterdir() if (d / "results.json").is_file()] if folder.is_dir() else []
    if not found:
        data.ablation_missing = f"no ablation has been run in this workspace (no {folder}/<id>/results.json; see `recur ablate`)"
        return
    newest = max(found, key=lambda d: (d.stat().st_mtime, d.name))
    path = newest / "results.json"
    try:
        results = json.loads(path.read_text())
        groups = results["groups"]
        if not isinstance(groups, list) or not groups:
            raise ValueError("it has no groups")
        for g in groups:
            float(g["mean_delta"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        data.ablation_missing = f"the newest ablation {path} is unreadable ({_one_line(exc)}), so it is not plotted"
        return
    data.ablation, data.ablation_path = results, path


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


# ------------------------------------------------------------------- helpers
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def trial_class(t: dict[str, Any]) -> str:
    """baseline, kept, discarded, failed or running."""
    payload = (t.get("candidate") or {}).get("payload") or {}
    if t["status"] == RUNNING:
        return "running"
    if payload.get("baseline") or t.get("kind") == "baseline":
        return "baseline" if _finite(t["metric"]) else "failed"
    if t["status"] in FAILED_STATUSES or not _finite(t["metric"]):
        return "failed"
    return "kept" if t["kept"] else "discarded"


def active_set(t: dict[str, Any]) -> str:
    payload = (t.get("candidate") or {}).get("payload") or {}
    if payload.get("baseline"):
        return NO_MECHANISM
    names = payload.get("active") or []
    return " + ".join(str(n) for n in names) if names else NO_MECHANISM


def short_scope(scope: str, run_id: str) -> str:
    """A window's scope without the run id and the top level's prefix: ``0/p0/cand/1/p0/ctrl``."""
    rel = scope[len(run_id) + 1:] if scope.startswith(run_id + "/") else scope
    parts = rel.split("/")
    if len(parts) > 1 and parts[0].startswith("L") and parts[0][1:].isdigit():
        parts = parts[1:]
    return "/".join(parts)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.2, facecolor="white")


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def _fmt(v: Any, spec: str = ".4f") -> str:
    return format(v, spec) if _finite(v) else "-"


# --------------------------------------------------------------- trials.png
def plot_trials(data: ReportData, path: Path) -> str | None:
    """Level-1 metric per trial in start order, best-so-far line, one band per window. None if no trials."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    trials = [t for t in data.level1 if trial_class(t) != "running"]
    if not trials:
        return None
    run_id, metric, maximize = data.run["id"], data.metric_name, data.maximize
    sets = []
    for t in trials:
        s = active_set(t)
        if s not in sets:
            sets.append(s)
    sets.sort(key=lambda s: (s != NO_MECHANISM, s))
    color = _colors(data)

    n = len(trials)
    fig = _figure(min(max(9.0, 0.09 * n + 6.0), 30.0), 5.5)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(1, n + 1))

    # windows: contiguous runs of one scope (workers > 1 can interleave them; each segment gets a band)
    segments: list[tuple[str, int, int]] = []
    for x, t in zip(xs, trials):
        if segments and segments[-1][0] == t["scope"]:
            segments[-1] = (t["scope"], segments[-1][1], x)
        else:
            segments.append((t["scope"], x, x))
    if len(segments) > 1:
        for i, (_, a, b) in enumerate(segments):
            if i % 2 == 1:
                ax.axvspan(a - 0.5, b + 0.5, color="#000000", alpha=0.05, lw=0)
            if i:
                ax.axvline(a - 0.5, color="#999999", lw=0.6, alpha=0.6)

    styles = {
        "baseline": dict(marker="D", s=34, facecolors="white", linewidths=1.4),
        "kept": dict(marker="o", s=70, linewidths=1.0, edgecolors="black"),
        "discarded": dict(marker="o", s=40, facecolors="none", linewidths=1.4),
    }
    for cls, style in styles.items():
        pts = [(x, t) for x, t in zip(xs, trials) if trial_class(t) == cls]
        if not pts:
            continue
        cols = [color[active_set(t)] for _, t in pts]
        kwargs = dict(style)
        if kwargs.get("facecolors") is None:
            kwargs["facecolors"] = cols
        if "edgecolors" not in kwargs:
            kwargs["edgecolors"] = cols
        ax.scatter([x for x, _ in pts], [t["metric"] for _, t in pts], zorder=3, **kwargs)

    top = blended_transform_factory(ax.transData, ax.transAxes)
    failed = [(x, t) for x, t in zip(xs, trials) if trial_class(t) == "failed"]
    if failed:
        ax.scatter([x for x, _ in failed], [0.96] * len(failed), transform=top, marker="x", s=55, linewidths=2,
                   c=[color[active_set(t)] for _, t in failed], zorder=3, clip_on=False)

    best_x, best_y, best = [], [], None
    for x, t in zip(xs, trials):
        m = t["metric"] if trial_class(t) in ("baseline", "kept", "discarded") else None
        if m is not None and (best is None or (m > best if maximize else m < best)):
            best = m
        if best is not None:
            best_x.append(x)
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="#222222", lw=1.3, alpha=0.8, zorder=2)

    ax.set_xlim(0.5, n + 0.5)
    ok = [t["metric"] for t in trials if trial_class(t) != "failed"]
    if ok:
        lo, hi = min(ok), max(ok)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.02 or 0.1
        ax.set_ylim(lo - pad, hi + pad * (3.0 if failed else 1.0))  # head room for the failed marks
    ax.set_xlabel("level-1 trial (in order of start time)")
    ax.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    ax.grid(True, axis="y", alpha=0.3)
    windows = len({t["scope"] for t in trials})
    title = f"Level-1 trials of run {run_id}: {n} trials in {windows} window{'s' * (windows != 1)}"
    if 1 < len(segments) <= SCOPE_LABEL_CAP:
        sec = ax.secondary_xaxis("top")
        sec.set_ticks([(a + b) / 2 for _, a, b in segments])
        sec.set_xticklabels([short_scope(s, run_id) for s, _, _ in segments], rotation=90, fontsize=7, color="#555555")
        sec.tick_params(length=0)
        ax.set_title(title + " (shaded bands: windows, labelled on top)", fontsize=11, pad=10)
    else:
        ax.set_title(title + (" (shaded bands: windows)" if len(segments) > 1 else ""), fontsize=11)

    present = {trial_class(t) for t in trials}
    kinds = [h for cls, h in [
        ("baseline", Line2D([], [], ls="", marker="D", mfc="white", mec="#555555", mew=1.4, label="baseline (unmodified)")),
        ("kept", Line2D([], [], ls="", marker="o", mfc="#555555", mec="black", ms=8, label="kept")),
        ("discarded", Line2D([], [], ls="", marker="o", mfc="none", mec="#555555", mew=1.4, label="discarded")),
        ("failed", Line2D([], [], ls="", marker="x", mec="#555555", mew=2, ms=7, label="failed: no metric (top edge)")),
    ] if cls in present]
    kinds.append(Line2D([], [], color="#222222", lw=1.3, label=f"best {metric} so far"))
    leg1 = ax.legend(handles=kinds, title="trial", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                     title_fontsize=9, frameon=False)
    ax.add_artist(leg1)
    shown = sets[:20]
    swatches = [Line2D([], [], ls="", marker="s", ms=8, mfc=color[s], mec=color[s], label=_shorten(s, 40)) for s in shown]
    if len(sets) > len(shown):
        swatches.append(Line2D([], [], ls="", label=f"... and {len(sets) - len(shown)} more"))
    ax.legend(handles=swatches, title="active mechanisms (colour)", loc="lower left", bbox_to_anchor=(1.01, 0.0),
              fontsize=8, title_fontsize=9, frameon=False)
    _save(fig, path)
    counts = {c: sum(trial_class(t) == c for t in trials) for c in ("baseline", "kept", "discarded", "failed")}
    return (f"The {metric} of every level-1 trial in the order it started ({counts['kept']} kept, {counts['discarded']} "
            f"discarded, {counts['failed']} failed, {counts['baseline']} baseline); the step line is the best "
            f"{metric} seen so far over all windows. Colour: the mechanisms active for the trial.")


def _palette(n: int) -> list[str]:
    """n distinct colours, leaving out red (errors, failed trials) and grey ("no mechanism")."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    strong = [colormaps["tab10"](i) for i in (0, 1, 2, 4, 5, 6, 8, 9)]
    strong += [colormaps["Dark2"](i) for i in (0, 2, 3, 4, 5, 6)]
    pale = [colormaps["tab20"](i) for i in (1, 3, 5, 9, 11, 13, 17, 19)]
    colors = [to_hex(c) for c in strong + pale]
    return [colors[i % len(colors)] for i in range(n)]


def _colors(data: ReportData) -> dict[str, str]:
    """One colour per mechanism (and per set of mechanisms active together), the same in every plot."""
    labels = sorted({active_set(t) for t in data.level1} | {r["mechanism"] for r in data.hook_rows})
    labels = [lab for lab in labels if lab != NO_MECHANISM]
    singles = [lab for lab in labels if " + " not in lab]
    combos = [lab for lab in labels if " + " in lab]
    ordered = singles + combos
    return {NO_MECHANISM: "#555555", **dict(zip(ordered, _palette(len(ordered))))}


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -------------------------------------------------------------- lineage.png
def plot_lineage(data: ReportData, path: Path, cap: int = LINEAGE_CAP) -> str | None:
    """Mechanism branches as a graph: one column per level, arrows along Parent links, colour by status."""
    from matplotlib.patches import Patch

    infos = {m.branch: m for m in (data.mechanisms or [])}
    if not infos:
        return None
    order = [b for b in data.order if b in infos] + sorted(b for b in infos if b not in set(data.order))
    shown = order[:cap]  # newest first
    shown_set = set(shown)
    rank = {b: i for i, b in enumerate(reversed(shown))}  # oldest first
    levels = sorted({infos[b].level for b in shown})
    col = {lv: i for i, lv in enumerate(levels)}

    # place nodes: per level, oldest on top; a node whose parent sits in another column follows its parent
    ypos: dict[str, float] = {}
    for lv in levels:
        nodes = [b for b in shown if infos[b].level == lv]

        def key(b: str) -> tuple:
            p = infos[b].parent
            return (ypos.get(p, -1.0) if p in ypos else -1.0, rank[b])

        for i, b in enumerate(sorted(nodes, key=key)):
            ypos[b] = float(i)
    rows = max(ypos.values()) + 1

    width = max(8.0, 3.6 * len(levels) + 1.0)
    height = max(3.2, 0.7 * rows + 1.6)
    fig = _figure(width, height)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(-0.6, len(levels) - 0.4)
    ax.set_ylim(rows - 0.4, -0.9)
    ax.axis("off")
    for lv in levels:
        ax.text(col[lv], -0.75, f"level {lv}", ha="center", va="center", fontsize=11, fontweight="bold")

    texts = {}
    for b in shown:
        m = infos[b]
        score = f"{m.score:+.4g}" if m.score is not None else "no score"
        parent_note = ""
        if m.parent and m.parent not in shown_set:
            parent_note = " · parent not shown" if m.parent in infos else " · parent missing"
        label = f"{m.name}\n{score} · {m.status}{parent_note}"
        c = STATUS_COLORS.get(m.status, "#bcbd22")
        texts[b] = ax.text(col[m.level], ypos[b], label, ha="center", va="center", fontsize=7.5, zorder=3,
                           bbox=dict(boxstyle="round,pad=0.35", fc=_tint(c), ec=c, lw=1.6))

    edges = 0
    for b in shown:
        p = infos[b].parent
        if not p or p not in shown_set:
            continue
        edges += 1
        child, parent = texts[b], texts[p]
        same = infos[b].level == infos[p].level
        if same:
            xy, xytext, style = (1.0, 0.5), (1.0, 0.5), "arc3,rad=-0.5"
        elif infos[b].level > infos[p].level:
            xy, xytext, style = (0.0, 0.5), (1.0, 0.5), "arc3,rad=0.0"
        else:
            xy, xytext, style = (1.0, 0.5), (0.0, 0.5), "arc3,rad=0.0"
        ax.annotate("", xy=xy, xycoords=child, xytext=xytext, textcoords=parent, zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.1, connectionstyle=style,
                                    shrinkA=2, shrinkB=2))

    statuses = [s for s in STATUS_COLORS if any(infos[b].status == s for b in shown)]
    statuses += sorted({infos[b].status for b in shown} - set(statuses))
    handles = [Patch(fc=_tint(STATUS_COLORS.get(s, "#bcbd22")), ec=STATUS_COLORS.get(s, "#bcbd22"), lw=1.6, label=s)
               for s in statuses]
    ax.legend(handles=handles, title="status", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              title_fontsize=9, frameon=False)
    title = "Mechanism lineage (arrows: Parent → child; ports cross levels)"
    ax.set_title(title, fontsize=11, pad=14)
    note = f"{len(shown)} mechanism branches"
    if len(order) > len(shown):
        note = f"showing the {len(shown)} most recent of {len(order)} mechanism branches"
    ax.text(0.0, -0.01, note + f", {edges} parent link{'s' * (edges != 1)} shown", transform=ax.transAxes,
            ha="left", va="top", fontsize=8, color="#444444")
    _save(fig, path)
    every = [s for s in STATUS_COLORS if any(m.status == s for m in infos.values())]
    every += sorted({m.status for m in infos.values()} - set(every))
    by_status = ", ".join(f"{sum(m.status == s for m in infos.values())} {s}" for s in every)
    cap_note = f" Only the {len(shown)} most recent of {len(order)} branches are drawn." if len(order) > len(shown) else ""
    return (f"Mechanism branches of the store, one column per level, labelled with name, score and status "
            f"({by_status}); arrows follow the Parent trailer (a port to another level, or a variant).{cap_note}")


def _tint(color: str, amount: float = 0.78) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


# ----------------------------------------------------------- hook_calls.png
def hook_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hook calls summed over windows per (mechanism, hook, level), sorted by level, mechanism and hook."""
    agg: dict[tuple[int, str, str], dict[str, Any]] = {}
    for r in rows:
        a = agg.setdefault((r["level"], r["mechanism"], r["hook"]), {"calls": 0, "errors": 0, "seconds": 0.0, "last_error": None})
        a["calls"] += r["calls"] or 0
        a["errors"] += r["errors"] or 0
        a["seconds"] += r["seconds"] or 0.0
        a["last_error"] = r["last_error"] or a["last_error"]
    return [{"level": lv, "mechanism": m, "hook": h, **v} for (lv, m, h), v in sorted(agg.items())]


def plot_hook_calls(data: ReportData, path: Path) -> str | None:
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    totals = [t for t in hook_totals(data.hook_rows) if t["calls"] or t["errors"]]
    if not totals:
        return None
    shown = totals[:HOOK_BAR_CAP]
    color = _colors(data)
    fig = _figure(10.0, max(2.6, 0.34 * len(shown) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(shown)))
    ok = [max(t["calls"] - t["errors"], 0) for t in shown]
    err = [min(t["errors"], t["calls"]) if t["calls"] else t["errors"] for t in shown]
    ax.barh(ys, ok, color=[color[t["mechanism"]] for t in shown], height=0.7)
    ax.barh(ys, err, left=ok, color="#d62728", hatch="///", edgecolor="white", height=0.7)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"L{t['level']} {t['mechanism']} · {t['hook']}" for t in shown], fontsize=8)
    ax.invert_yaxis()
    xmax = max(t["calls"] for t in shown) or 1
    ax.set_xlim(0, xmax * 1.35)
    for y, t in zip(ys, shown):
        note = f"{t['calls']} call{'s' * (t['calls'] != 1)}, {t['seconds'] * 1000:.1f} ms"
        if t["errors"]:
            note += f", {t['errors']} error{'s' * (t['errors'] != 1)}"
        ax.text(t["calls"] + xmax * 0.01, y, note, va="center", fontsize=7.5,
                color="#d62728" if t["errors"] else "#333333")
    ax.set_xlabel("hook calls in this run (all windows)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    title = f"Hook calls per mechanism and hook, run {data.run['id']}"
    if len(totals) > len(shown):
        title += f" (first {len(shown)} of {len(totals)})"
    ax.set_title(title, fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if any(t["errors"] for t in shown):
        ax.legend(handles=[Patch(fc="#999999", label="calls that returned a valid value\n(colour: mechanism)"),
                           Patch(fc="#d62728", hatch="///", ec="white", label="errors: raised, timed out\nor returned invalid")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _save(fig, path)
    calls = sum(t["calls"] for t in totals)
    errors = sum(t["errors"] for t in totals)
    return (f"Hook calls of the run's active mechanisms, per mechanism and hook (L = the level the mechanism "
            f"acted on): {calls} calls, {errors} errors in all; red hatching marks errors.")


# ------------------------------------------------------------- ablation.png
def plot_ablation(data: ReportData, path: Path) -> str | None:
    import random
    import textwrap

    from matplotlib.lines import Line2D

    res = data.ablation
    if not res:
        return None
    groups = res["groups"]
    fig = _figure(max(7.5, 1.6 * len(groups) + 4.2), 5.0)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(groups)))
    means = [float(g["mean_delta"]) for g in groups]
    lows = [g.get("ci_low") for g in groups]
    highs = [g.get("ci_high") for g in groups]
    err_lo = [m - lo if _finite(lo) else 0.0 for m, lo in zip(means, lows)]
    err_hi = [hi - m if _finite(hi) else 0.0 for m, hi in zip(means, highs)]
    colors = _palette(len(groups))
    ax.bar(xs, means, color=[_tint(c, 0.45) for c in colors], edgecolor=colors, width=0.6, zorder=2)
    ax.errorbar(xs, means, yerr=[[max(e, 0.0) for e in err_lo], [max(e, 0.0) for e in err_hi]], fmt="none",
                ecolor="black", capsize=6, lw=1.3, zorder=3)
    rng = random.Random(0)
    allv = list(means)
    for x, g, c in zip(xs, groups, colors):
        deltas = [float(d) for d in g.get("deltas") or [] if _finite(d)]
        allv += deltas
        ax.scatter([x + rng.uniform(-0.15, 0.15) for _ in deltas], deltas, s=22, color="black", alpha=0.7, zorder=4)
    allv += [v for v in lows + highs if _finite(v)]
    lo, hi = min(allv + [0.0]), max(allv + [0.0])
    span = (hi - lo) or 1.0
    ax.set_ylim(lo - 0.08 * span, hi + 0.2 * span)
    for x, g, m, h in zip(xs, groups, means, highs):
        top = max([0.0, m] + ([h] if _finite(h) else []) + [float(d) for d in g.get("deltas") or [] if _finite(d)])
        p = g.get("p_vs_A")
        label = f"mean {m:+.3g}"
        if _finite(p):
            label += f"\np = {p:.3g} vs A"
        ax.text(x, top + 0.03 * span, label, ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="#555555", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([textwrap.fill(f"{g.get('group', '?')}: {_shorten(str(g.get('label', '')), 60)}", 24)
                        + f"\n(n={g.get('repeats', len(g.get('deltas') or []))})" for g in groups], fontsize=8)
    metric = res.get("metric") or data.metric_name
    maximize = res.get("maximize", data.maximize if res.get("task") == data.run["config"].get("task") else None)
    direction = "" if maximize is None else f" ({'higher' if maximize else 'lower'} is better)"
    ax.set_ylabel(f"Δ best {metric}{direction}")
    ax.set_title(f"Ablation {res.get('id', '')} on {res.get('task', '?')}: Δ best {metric} per group", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=[Line2D([], [], color="black", marker="|", ms=10, ls="", label="CI of the mean"),
                       Line2D([], [], color="black", marker="o", ms=4, ls="", alpha=0.7, label="one repeat")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    _save(fig, path)
    return (f"Ablation {res.get('id', '')} (newest in the workspace, {data.ablation_path}): mean change of the best "
            f"{metric} per group with its confidence interval; dots are single repeats; p-values compare each "
            f"group with group A.")


# ------------------------------------------------------------- best_so_far.png
def group_band(curves: list[list[float | None]]) -> tuple[list[float], list[float], list[float]]:
    """Mean and 95% t band, per level-1 trial, of best-so-far curves of unequal length (a curve that ended
    keeps its last value: the best found does not get worse after a run stops)."""
    from recur.core.stats import mean_ci

    curves = [[float(v) for v in c if _finite(v)] for c in curves]
    curves = [c for c in curves if c]
    n = max((len(c) for c in curves), default=0)
    means, lows, highs = [], [], []
    for i in range(n):
        column = [c[min(i, len(c) - 1)] for c in curves]
        lo, hi = mean_ci(column)
        means.append(statistics.fmean(column))
        lows.append(lo)
        highs.append(hi)
    return means, lows, highs


def plot_best_so_far(data: ReportData, path: Path) -> str | None:
    res = data.ablation
    groups = [g for g in (res or {}).get("groups", []) if any(g.get("curves") or [])]
    if not groups:
        return None
    fig = _figure(9.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for g, color in zip(groups, _palette(len(groups))):
        means, lows, highs = group_band(g["curves"])
        xs = list(range(1, len(means) + 1))
        ax.plot(xs, means, color=color, lw=1.8, label=f"{g['group']}: {_shorten(str(g.get('label', '')), 40)} "
                                                     f"(n={len([c for c in g['curves'] if c])})")
        ax.fill_between(xs, lows, highs, color=color, alpha=0.18, lw=0)
    metric = res.get("metric") or data.metric_name
    ax.axhline(0, color="#555555", lw=0.8)
    ax.set_xlabel("level-1 trials charged (baseline included)")
    ax.set_ylabel(f"Δ best {metric} so far")
    ax.set_title(f"Best so far at equal level-1 budget, {res.get('task', '?')} (mean, 95% band over repeats)", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)
    return (f"Ablation {res.get('id', '')}: Δ of the best {metric} from the baseline after each level-1 trial, per "
            f"group; the line is the mean over repeats and the band its 95% t interval. Every group has the same "
            f"level-1 budget, so a gap between lines at the same x is what the outer levels bought.")


# ---------------------------------------------------------------- the report
def _store_summary(data: ReportData) -> tuple[str, str]:
    if data.mechanisms is None or not data.mechanisms:
        return "-", "-"
    counts: dict[str, int] = {}
    for m in data.mechanisms:
        counts[m.status] = counts.get(m.status, 0) + 1
    total = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    mine: dict[str, int] = {}
    for m in data.mechanisms:
        if m.trailers.get("Trial", "").startswith(data.run["id"] + "/"):
            mine[m.status] = mine.get(m.status, 0) + 1
    this = ", ".join(f"{n} {s}" for s, n in sorted(mine.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"
    return f"{len(data.mechanisms)} ({total})", this


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if _finite(ts) else "-"


def summary_rows(data: ReportData) -> list[tuple[str, str]]:
    cfg = data.run["config"]
    l1 = data.level1
    classes = [trial_class(t) for t in l1]
    base = [t["metric"] for t, c in zip(l1, classes) if c == "baseline"]
    tried = [t for t, c in zip(l1, classes) if c in ("kept", "discarded")]
    best_t = None
    for t in tried:
        if best_t is None or (t["metric"] > best_t["metric"] if data.maximize else t["metric"] < best_t["metric"]):
            best_t = t
    rows = [
        ("level-1 trials", f"{len(l1)} ({classes.count('kept')} kept, {classes.count('discarded')} discarded, "
                           f"{classes.count('failed')} failed, {classes.count('baseline')} baseline"
                           + (f", {classes.count('running')} unfinished" if classes.count("running") else "") + ")"),
        (f"baseline {data.metric_name}", _fmt(sum(base) / len(base)) + f" (mean of {len(base)})" if base else "-"),
        (f"best {data.metric_name}", f"{best_t['metric']:.4f} (trial {best_t['id']})" if best_t else "-"),
    ]
    for lv in sorted({t["level"] for t in data.trials} - {1}):
        ts = [t for t in data.trials if t["level"] == lv]
        rows.append((f"level-{lv} trials", f"{len(ts)} ({sum(bool(t['kept']) for t in ts)} kept)"))
    total, this = _store_summary(data)
    rows.append(("mechanisms in the store", total))
    rows.append(("mechanisms evaluated by this run", this))
    calls = sum(r["calls"] or 0 for r in data.hook_rows)
    errors = sum(r["errors"] or 0 for r in data.hook_rows)
    rows.append(("hook calls", f"{calls} ({errors} errors)"))
    rows.append(("model", str(cfg.get("model", "-"))))
    return rows


def write_report(data: ReportData, out: Path) -> list[Section]:
    """Write the plots and ``index.html`` into ``out``; returns the sections (written or left out)."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOTS:  # a plot left out this time must not linger from an earlier report in the same folder
        (out / name).unlink(missing_ok=True)
    sections = [
        _section("trials", "Level-1 trials", "trials.png", out, lambda p: plot_trials(data, p),
                 "the run has no finished level-1 trials yet"),
        _section("lineage", "Mechanism lineage", "lineage.png", out, lambda p: plot_lineage(data, p),
                 data.store_missing or "the mechanism store has no mechanism branches yet"),
        _section("hook_calls", "Hook calls", "hook_calls.png", out, lambda p: plot_hook_calls(data, p),
                 "no mechanism hook was called in this run (no mechanism was active, e.g. a --levels 1 run "
                 "with an empty store)"),
        _section("ablation", "Ablation", "ablation.png", out, lambda p: plot_ablation(data, p),
                 data.ablation_missing or "no ablation results"),
        _section("best_so_far", "Best so far per group", "best_so_far.png", out, lambda p: plot_best_so_far(data, p),
                 data.ablation_missing or "the ablation's jobs recorded no best-so-far curves (made by an older recur)"),
    ]
    from recur.evidence.found import what_was_found

    found = what_was_found(data)
    (out / FOUND).unlink(missing_ok=True)
    if found:
        (out / FOUND).write_text(found)
    (out / "index.html").write_text(render_html(data, sections, found))
    return sections


def _section(key: str, title: str, name: str, out: Path, draw, why: str) -> Section:
    path = out / name
    caption = draw(path)
    if caption is None:
        return Section(key, title, missing=why)
    return Section(key, title, file=name, caption=caption)


def render_html(data: ReportData, sections: list[Section], found: str | None = None) -> str:
    e = html.escape
    run, cfg = data.run, data.run["config"]
    head = (f"run <code>{e(run['id'])}</code> · task <b>{e(str(cfg.get('task', '?')))}</b>"
            f"{' (' + e(str(cfg['preset'])) + ')' if cfg.get('preset') else ''} · {e(str(cfg.get('levels', '?')))} "
            f"level(s) · status {e(str(run['status']))} · started {e(_when(run['created']))}"
            f" · finished {e(_when(run['finished']))}")
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary_rows(data))
    parts = []
    for s in sections:
        if s.file:
            parts.append(f'<section id="{s.key}"><h2>{e(s.title)}</h2>\n<figure><a href="{e(s.file)}">'
                         f'<img src="{e(s.file)}" alt="{e(s.title)}"></a>\n<figcaption>{e(s.caption)}</figcaption>'
                         f"</figure></section>")
        else:
            parts.append(f'<section id="{s.key}"><h2>{e(s.title)}</h2>\n<p class="missing">Not plotted: '
                         f"{e(s.missing or '')}.</p></section>")
    if found:
        parts.insert(0, f'<section id="found"><h2>What level 2 found</h2>\n<pre>{e(found)}</pre></section>')
    body = "\n".join(parts)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>recur report: {e(run['id'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; color: #444; }}
pre {{ white-space: pre-wrap; background: #f7f7f7; padding: 0.8em; }}
img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ color: #444; font-size: 0.92em; margin-top: 0.4em; }}
.missing {{ color: #777; font-style: italic; }}
</style>
</head>
<body>
<h1>recur report</h1>
<p>{head}</p>
<p>Generated {e(_when(time.time()))} by <code>recur report</code>.</p>
<table>
{table}
</table>
{body}
</body>
</html>
"""


def build(workdir: Path | str | None, out: Path, run_id: str | None = None) -> list[Section]:
    """Load the workspace and write the report: the whole ``recur report`` minus printing."""
    return write_report(load(workdir, run_id), out)
