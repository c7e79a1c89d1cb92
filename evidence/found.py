""""What level 2 found": a short markdown account of a run's outer levels, written by ``recur report``.

It is generated from the trace and the mechanism store, never written by hand: how many candidates each outer
level considered and where each stopped (gate, dry run, screen, race), the real level-1 trials the races
spent per promotion, how well the screen predicted the race, and one row per raced mechanism with its race
verdict, effect (hook calls that changed a decision) and held-out check. README's section of the same name
is this file's output for a named run.
"""
from __future__ import annotations

import statistics
from typing import Any

STAGES = ("unsafe", "inactive", "unraced", "screened", "shortlisted", "rejected", "promoted", "budget", "unfinished")


def _status(row: dict[str, Any]) -> str:
    """Where a candidate of an outer level stopped."""
    info = (row.get("decision") or {}).get("info") or {}
    if row.get("kept"):
        return "promoted"
    status = row["status"]
    if status in ("unsafe", "inactive", "unraced", "screened", "shortlisted", "budget"):
        return status
    if (((row.get("outcome") or {}).get("info")) or {}).get("unfinished"):
        return "unfinished"
    return str(info.get("status") or "rejected")


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return (row.get("candidate") or {}).get("payload") or {}


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per candidate: a shortlisted candidate is represented by its race, a race that windows split into
    parts by its last part (which holds all of its blocks)."""
    superseded = {_payload(r).get(key) for r in rows for key in ("continues", "shortlisted_from")}
    return [r for r in rows if r["id"] not in superseded]


def candidates(trials: list[dict[str, Any]], level: int) -> list[dict[str, Any]]:
    """Level ``level``'s candidate rows (incumbent windows left out), oldest first."""
    out = []
    for t in trials:
        payload = (t.get("candidate") or {}).get("payload") or {}
        if t["level"] == level and not payload.get("incumbent") and t["status"] != "running":
            out.append(t)
    return out


def _fmt(x: Any, spec: str = "+.4g") -> str:
    return "-" if x is None else format(x, spec)


def level_account(trials: list[dict[str, Any]], level: int, store_by_name: dict[str, Any]) -> list[str]:
    every = candidates(trials, level)
    rows = _latest(every)
    if not rows:
        return [f"Level {level} made no candidate (its windows were all incumbent windows)."]
    stages = [_status(r) for r in rows]
    counts = {s: stages.count(s) for s in STAGES if stages.count(s)}
    raced = [(r, s) for r, s in zip(rows, stages) if ((r["outcome"] or {}).get("info") or {}).get("pairs")]
    spent = sum(int(((r["outcome"] or {}).get("info") or {}).get("trials", 0)) for r in every
                if ((r["outcome"] or {}).get("info") or {}).get("pairs"))
    promoted = sum(s == "promoted" for _, s in raced)
    lines = [f"Level {level} considered {len(rows)} candidates: "
             + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."]
    screened_in = [(r, s) for r, s in raced if ((r["outcome"] or {}).get("info") or {}).get("screen")]
    if screened_in:
        lines.append(f"The screen passed {len(screened_in)} of them on to a race and stopped "
                     f"{counts.get('screened', 0)}; {sum(s == 'promoted' for _, s in screened_in)} of the "
                     f"{len(screened_in)} it passed won their race (the screen's precision on this run; a "
                     f"screened-out candidate is never raced, so its recall is not measured here).")
    lines.append(f"Races spent {spent} real level-1 trials (both arms, every one on the run's line of search) for {promoted} promotion(s)"
                 + (f": {spent / promoted:.0f} per promotion." if promoted else "."))
    if raced:
        lines += ["", "| mechanism | verdict | race Δ gain per trial | p | blocks | hook calls (changed a decision) "
                      "| screen Δ per trial (p) | held-out |", "|---|---|---|---|---|---|---|---|"]
        for r, s in raced:
            info = (r["outcome"] or {}).get("info") or {}
            race = info.get("race") or {}
            calls = info.get("hook_calls") or {}
            effects = info.get("hook_effects") or {}
            hooks = ", ".join(f"{h} {calls[h]} ({effects.get(h, 0)})" for h in calls) or "-"
            screen = info.get("screen") or {}
            name = info.get("mechanism") or r["kind"]
            held = getattr(store_by_name.get(name), "trailers", {}).get("Held-Out", "-")
            lines.append(f"| {name} | {s} | {_fmt(r['metric'])} | {_fmt(race.get('p'), '.3g')} | {race.get('pairs', '-')} "
                         f"| {hooks} | {_fmt(screen.get('diff'))} ({_fmt(screen.get('p'), '.3g')}) | {held} |")
    return lines


def what_was_found(data: Any) -> str | None:
    """The markdown section for a ``ReportData``; None when the run had no outer level."""
    from recur.core.trace import charged_trials

    levels = sorted({t["level"] for t in data.trials} - {1})
    if not levels:
        return None
    cfg = data.run["config"]
    l1 = [t for t in data.level1 if "/heldout/" not in t["scope"] and "/transfer/" not in t["scope"]]
    base = [t["metric"] for t in l1 if t["scope"].endswith("/baseline") and t["metric"] is not None]
    ok = [t["metric"] for t in l1 if t["status"] == "ok" and t["metric"] is not None]
    best = (max if data.maximize else min)(ok) if ok else None
    head = (f"Run `{data.run['id']}`: task {cfg.get('task', '?')}, levels {cfg.get('levels', '?')}, model "
            f"{cfg.get('model', '?')}, seed {cfg.get('seed', '?')}; {charged_trials(l1)} level-1 trials charged "
            f"({len(l1)} with reused ones), baseline {_fmt(statistics.fmean(base) if base else None, '.4f')} -> best "
            f"observed {_fmt(best, '.4f')} {data.metric_name}.")
    by_name = {m.name: m for m in data.mechanisms or []}
    lines = ["## What level 2 found", "", head, ""]
    for lv in levels:
        lines += level_account(data.trials, lv, by_name) + [""]
    res = data.ablation
    if res:
        lines += [f"Newest ablation `{res.get('id', '')}` (Δ best {res.get('metric', 'metric')} from the baseline, "
                  f"mean [95% CI] over repeats, p against A):", ""]
        for g in res["groups"]:
            lines.append(f"- {g['group']} ({g.get('label', '')}): {_fmt(g.get('mean_delta'))} "
                         f"[{_fmt(g.get('ci_low'))}, {_fmt(g.get('ci_high'))}], p {_fmt(g.get('p_vs_A'), '.3g')}, "
                         f"{g.get('promoted', 0)} promoted ({', '.join(g.get('promoted_names') or []) or 'none'})")
        for a in res.get("added", []):
            lines.append(f"- {a['group']} - {a['extends']}: {_fmt(a.get('mean_diff'))} [{_fmt(a.get('ci_low'))}, "
                         f"{_fmt(a.get('ci_high'))}], two-sided p {_fmt(a.get('p'), '.3g')}; {a['runs_differ']} of "
                         f"{a['runs']} runs differ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["candidates", "level_account", "what_was_found"]
