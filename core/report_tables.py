"""Tables shared by ``recur status``, ``recur export`` and reports, read from the trace store only."""
from __future__ import annotations

import math
from typing import Any

from recur.core.trace import TraceStore, charged_trials


def best_value(values: list[float | None], maximize: bool) -> float | None:
    """The best finite value (None when there is none): the one definition of "best of a run" for tables,
    reports and the ablation."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (max(finite) if maximize else min(finite)) if finite else None


def level_summary(trace: TraceStore, run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per level: trials, ok/kept/failed counts, best metric, seconds, and model use."""
    maximize = bool(run["config"].get("maximize", False))
    rows = []
    trials = trace.trials(run["id"])
    calls = trace.llm_calls(run["id"])
    for level in sorted({t["level"] for t in trials} | {c["level"] for c in calls if c["level"] is not None}):
        ts = [t for t in trials if t["level"] == level]
        cs = [c for c in calls if c["level"] == level]
        rows.append({
            "level": level,
            "trials": len(ts),
            "running": sum(t["status"] == "running" for t in ts),
            "ok": sum(t["status"] == "ok" for t in ts),
            "kept": sum(bool(t["kept"]) for t in ts),
            "failed": sum(t["status"] not in ("ok", "running") for t in ts),
            "best": best_value([t["metric"] for t in ts], maximize if level == 1 else True),
            "seconds": sum(t["seconds"] or 0.0 for t in ts),
            "model": ", ".join(sorted({c["model"] for c in cs if c["model"]})) or run["config"].get("model", "-"),
            "llm_calls": len(cs),
            "tokens": sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in cs),
            "usd": sum(c["cost_usd"] or 0.0 for c in cs),
        })
    return rows


def model_label(model: str) -> str:
    """What a ``--model`` value is, for people: the offline default names the model it embeds."""
    from recur.core.offline_model import MODEL_LABEL

    return {"offline": f"offline: {MODEL_LABEL}", "scripted": "scripted (non-LLM search baseline)"}.get(model, model)


def status_tables(trace: TraceStore, run: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    cfg = run["config"]
    head = Table(title=f"run {run['id']} — {run['status']}", show_header=False)
    for key in ("task", "preset", "levels", "model", "seed", "max_trials"):
        if cfg.get(key) is not None:  # unset options (no preset, say) are left out, not shown as None
            head.add_row(key, model_label(cfg[key]) if key == "model" else str(cfg[key]))
    levels = Table(title="levels")
    for col in ("level", "trials", "ok", "kept", "failed", "running", "best", "seconds", "model", "llm calls", "tokens", "usd"):
        levels.add_column(col, justify="right" if col not in ("model",) else "left")
    for r in level_summary(trace, run):
        levels.add_row(str(r["level"]), str(r["trials"]), str(r["ok"]), str(r["kept"]), str(r["failed"]), str(r["running"]),
                       "-" if r["best"] is None else f"{r['best']:.4f}", f"{r['seconds']:.0f}", r["model"],
                       str(r["llm_calls"]), str(r["tokens"]), f"{r['usd']:.4f}")
    tables = [head, levels]
    budget = cfg.get("budget")
    if budget:
        b = Table(title="budget")
        for col in ("unit", "limit", "used"):
            b.add_column(col)
        used = {"trials": charged_trials(trace.trials(run["id"], level=1)),
                "seconds": sum(t["seconds"] or 0.0 for t in trace.trials(run["id"], level=1)),
                "tokens": sum((c["prompt_tokens"] or 0) + (c["completion_tokens"] or 0) for c in trace.llm_calls(run["id"])),
                "usd": sum(c["cost_usd"] or 0.0 for c in trace.llm_calls(run["id"]))}
        for unit, limit in budget.items():
            b.add_row(unit, "-" if limit is None else str(limit), f"{used.get(unit, 0):.4g}")
        tables.append(b)
    speed = trial_speed(trace.trials(run["id"], level=1))
    if speed:
        st = Table(title="level-1 trials (median over ok trials)")
        for col in ("measure", "value"):
            st.add_column(col)
        for name, value in speed:
            st.add_row(name, value)
        tables.append(st)
    hooks = trace.hook_totals(run["id"])
    if hooks:
        ht = Table(title="hook calls (summed over every window of the run)")
        for col in ("mechanism", "hook", "calls", "changed decisions", "errors"):
            ht.add_column(col)
        for (m, h), v in sorted(hooks.items()):
            ht.add_row(m, h, str(v["calls"]), str(v["changed"]), str(v["errors"]))
        tables.append(ht)
    return tables


def trial_speed(trials: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Start-up (the first trial's, cold, then the rest's median, warm), throughput, MFU and passes over the
    corpus of a run's trials, where the task reports them (gpt_pretrain does); [] when none does."""
    import statistics

    infos = [(t["outcome"] or {}).get("info") or {} for t in trials if t["status"] == "ok"]
    rows: list[tuple[str, str]] = []
    startups = [i["startup_seconds"] for i in infos if isinstance(i.get("startup_seconds"), (int, float))]
    if startups:
        rest = f", then {statistics.median(startups[1:]):.1f} s" if len(startups) > 1 else ""
        rows.append(("start-up", f"first trial {startups[0]:.1f} s{rest}"))
    for key, label, fmt in (("tokens_per_s", "tokens/s", "{:,.0f}"), ("mfu", "MFU %", "{:.1f}"),
                            ("epochs", "epochs per trial", "{:.2f}")):
        values = [i[key] for i in infos if isinstance(i.get(key), (int, float))]
        if values:
            rows.append((label, fmt.format(statistics.median(values))))
    return rows


def results_tsv(trace: TraceStore, run_id: str) -> str:
    """autoresearch's results.tsv: one row per level-1 trial (baselines included), tab separated."""
    lines = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for t in trace.trials(run_id, level=1):
        if t["status"] == "running":
            continue
        cand, out = t["candidate"] or {}, t["outcome"] or {}
        payload = cand.get("payload", {})
        status = "keep" if t["kept"] else ("crash" if t["status"] != "ok" else "discard")
        if payload.get("baseline"):
            desc = "baseline"
            status = "baseline" if t["status"] == "ok" else "crash"
        else:
            params = payload.get("params") or {}
            desc = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or ("diff" if payload.get("diff") else cand.get("kind", ""))
        commit = (t["commit_sha"] or cand.get("parent") or "")[:7]
        metric = "0.000000" if t["metric"] is None else f"{t['metric']:.6f}"
        mem = (out.get("info") or {}).get("memory_gb")
        lines.append(f"{commit}\t{metric}\t{0.0 if mem is None else float(mem):.1f}\t{status}\t{desc.replace(chr(9), ' ')}")
    return "\n".join(lines) + "\n"
