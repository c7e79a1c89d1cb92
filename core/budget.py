"""Budgets: trials, wall-clock seconds, LLM tokens and USD, per level.

Usage is charged from recorded outcomes (``Outcome.cost``), so a resumed run counts what the killed run
already spent. A parent hands each child window a slice; exhausting any limit ends a loop between trials,
never mid-write.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

UNITS = ("trials", "seconds", "tokens", "usd")


@dataclass
class Budget:
    """Limits (``math.inf`` = unlimited) and what has been used against them."""

    trials: float = math.inf
    seconds: float = math.inf
    tokens: float = math.inf
    usd: float = math.inf
    used: dict[str, float] = field(default_factory=lambda: {u: 0.0 for u in UNITS})
    parent: "Budget | None" = None

    def charge(self, cost: dict[str, float]) -> None:
        """Record spending here and in every ancestor budget."""
        for unit in UNITS:
            self.used[unit] += float(cost.get(unit, 0.0) or 0.0)
        if self.parent is not None:
            self.parent.charge(cost)

    def remaining(self, unit: str) -> float:
        return getattr(self, unit) - self.used[unit]

    def exhausted_by(self) -> str | None:
        """The first limit reached here or in an ancestor, or None."""
        for unit in UNITS:
            if self.used[unit] >= getattr(self, unit):
                return unit
        return self.parent.exhausted_by() if self.parent is not None else None

    @property
    def exhausted(self) -> bool:
        return self.exhausted_by() is not None

    def slice(self, **limits: float) -> "Budget":
        """A child budget whose spending also counts here; limits not given are unlimited in the child."""
        return Budget(**{u: float(limits.get(u, math.inf)) for u in UNITS}, parent=self)

    def describe(self) -> dict[str, dict[str, float | None]]:
        return {u: {"limit": None if math.isinf(getattr(self, u)) else getattr(self, u), "used": self.used[u]} for u in UNITS}
