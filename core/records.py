"""The one record shape every level uses, so a mechanism written for one level runs at another.

A record is ``{id, level, parent, kind, payload, metric, cost, status, seed}``. ``Candidate`` is what a level
proposes, ``Outcome`` what evaluating it gave, ``Decision`` whether it was kept. All are plain dataclasses
that round-trip through JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Trial statuses. ``running`` is written before a trial starts, so a killed run can be resumed exactly.
RUNNING = "running"
OK = "ok"
CRASH = "crash"
TIMEOUT = "timeout"
NAN = "nan"
OOM = "oom"
VOID = "void"  # the pinned evaluator changed under the trial
INVALID = "invalid"  # the proposal could not be applied (bad edit, unparsable diff)
FAILED_STATUSES = frozenset({CRASH, TIMEOUT, NAN, OOM, VOID, INVALID})


def json_safe(value: Any) -> Any:
    """Map NaN/inf to None recursively so records stay strict JSON (SQLite and browsers choke on NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class JsonRecord:
    """JSON round trip shared by the record dataclasses: strict JSON out (NaN -> null), known fields in (a
    field missing from older rows takes its default; ``Candidate`` has no defaults but ``parent``)."""

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str):  # type: ignore[no-untyped-def]
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})  # type: ignore[arg-type]


@dataclass
class Candidate(JsonRecord):
    """Something a level will try: an edit of train.py at level 1, a mechanism at level 2 and above."""

    id: str
    level: int
    kind: str
    payload: dict[str, Any]
    seed: int
    parent: str | None = None


@dataclass
class Outcome(JsonRecord):
    """What evaluating a candidate gave. ``metric`` is None when the trial failed (see ``status``)."""

    status: str
    metric: float | None = None
    cost: dict[str, float] = field(default_factory=dict)  # trials, seconds, tokens, usd
    info: dict[str, Any] = field(default_factory=dict)  # log tail, memory, child window summary...

    @property
    def ok(self) -> bool:
        return self.status == OK and self.metric is not None and math.isfinite(self.metric)


@dataclass
class Decision(JsonRecord):
    """Keep or discard, and why (the reason is shown in status, export and reports)."""

    keep: bool
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trial:
    """A history entry: the candidate, what it gave and what was decided. This is what hooks see (as JSON)."""

    candidate: Candidate
    outcome: Outcome
    decision: Decision

    def as_record(self) -> dict[str, Any]:
        """The flat JSON record handed to mechanisms: ``{id, level, parent, kind, payload, metric, cost, status, seed, kept}``."""
        c, o = self.candidate, self.outcome
        return json_safe(
            {
                "id": c.id,
                "level": c.level,
                "parent": c.parent,
                "kind": c.kind,
                "payload": {k: v for k, v in c.payload.items() if k != "decision"},  # replay data, not history
                "metric": o.metric,
                "cost": o.cost,
                "status": o.status,
                "seed": c.seed,
                "kept": self.decision.keep,
            }
        )
