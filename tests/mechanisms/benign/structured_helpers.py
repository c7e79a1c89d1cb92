"""A mechanism written in a more structured style: dataclass helper, enum, typing, lru_cache, properties.

Exercises the allowed surface of the policy: ``from __future__ import annotations``, typed signatures,
``dataclasses.dataclass``, ``enum.Enum``, ``functools.lru_cache``, ``@property``/``.setter``, static and class
methods, a private helper on ``self``, ``getattr`` with a literal name, ``super().__init__()``, ``__repr__``.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, Optional

from recur.core.mechanism_api import Mechanism

DEFAULT_LIMIT: int = 8
WEIGHTS = {"ok": 1.0, "crash": -1.0}


class Verdict(enum.Enum):
    KEEP = "keep"
    DROP = "drop"


@dataclasses.dataclass(frozen=True)
class Scored:
    score: float
    index: int


@functools.lru_cache(maxsize=128)
def weight(status: str) -> float:
    return WEIGHTS.get(status, 0.0)


class Structured(Mechanism):
    """Keep at most ``limit`` proposals, preferring kinds with a good status record."""

    PARAMS: dict[str, Any] = {"limit": DEFAULT_LIMIT}

    def __init__(self, limit: Optional[int] = None) -> None:
        super().__init__()
        self._limit = limit

    def __repr__(self) -> str:
        return f"Structured(limit={self.limit})"

    @property
    def limit(self) -> int:
        return int(self._limit if self._limit is not None else self.PARAMS.get("limit", DEFAULT_LIMIT))

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value

    @staticmethod
    def kind_of(proposal: dict) -> str:
        return str(proposal.get("kind", ""))

    @classmethod
    def describe(cls) -> str:
        return "structured filter"

    def _score(self, proposal: dict, history: list) -> float:
        kind = self.kind_of(proposal)
        return sum(weight(str(r.get("status"))) for r in history if r.get("kind") == kind)

    def filter(self, proposals: list, history: list) -> list:
        scored = [Scored(self._score(p, history), i) for i, p in enumerate(proposals)]
        scored.sort(key=lambda s: (-s.score, s.index))
        verdicts = {s.index: (Verdict.KEEP if rank < self.limit else Verdict.DROP) for rank, s in enumerate(scored)}
        kept = [p for i, p in enumerate(proposals) if verdicts[i] is Verdict.KEEP]
        if getattr(self, "limit", 0) <= 0:
            return list(proposals)
        return kept
