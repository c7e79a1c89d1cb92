"""Reading a level's trace the way the paper's outer loop does: where does its search stall?

Returns numbers and tags (``repeats``, ``stagnation``, ``narrow-exploration``, ``crashes``, ``exploitation``)
that the outer level's prompt shows and the offline model's specification grammar chooses from.
"""
from __future__ import annotations

import json
from typing import Any


def diagnose(records: list[dict[str, Any]], level: int) -> dict[str, Any]:
    """Summarise finished trials of ``level`` (trace rows, oldest first)."""
    n = len(records)
    if n == 0:
        return {"level": level, "trials": 0, "tags": ["narrow-exploration"], "repeat_rate": 0.0, "stagnation": 0,
                "crash_rate": 0.0, "kinds": 0, "params_touched": 0}
    points = []
    kinds = set()
    touched: set[str] = set()
    for r in records:
        payload = (r.get("candidate") or {}).get("payload", {})
        params = payload.get("params") or {}
        points.append(json.dumps(params, sort_keys=True, default=str))
        kinds.add(r.get("kind"))
        touched.update(params)
    repeat_rate = 1.0 - len(set(points)) / n
    crash_rate = sum(r["status"] not in ("ok",) for r in records) / n
    stagnation = 0
    for r in reversed(records):
        if r.get("kept"):
            break
        stagnation += 1
    kept = sum(bool(r.get("kept")) for r in records)
    tags = []
    if repeat_rate > 0.1:
        tags.append("repeats")
    if stagnation >= max(4, n // 3):
        tags.append("stagnation")
    if len(kinds) <= max(2, n // 6):
        tags.append("narrow-exploration")
    if crash_rate > 0.2:
        tags.append("crashes")
    if kept and stagnation < 3:
        tags.append("exploitation")
    return {"level": level, "trials": n, "tags": tags or ["stagnation"], "repeat_rate": round(repeat_rate, 3),
            "stagnation": stagnation, "crash_rate": round(crash_rate, 3), "kinds": len(kinds),
            "params_touched": len(touched), "kept": kept}
