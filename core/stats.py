"""Noise-aware statistics shared by every level: the noise floor and the keep rule.

An edit is kept only when it beats the best by more than max(2 sigma, floor), sigma being the spread of
repeated baseline trials with different seeds: smaller "gains" are indistinguishable from seed noise.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable


def noise_sigma(values: Iterable[float | None]) -> float:
    """Sample standard deviation of the finite values (0 with fewer than two)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.stdev(finite) if len(finite) >= 2 else 0.0


def keep_threshold(sigma: float, floor: float) -> float:
    return max(2.0 * sigma, floor)


def improves(metric: float | None, best: float | None, threshold: float, maximize: bool = False) -> bool:
    """True when ``metric`` beats ``best`` by more than ``threshold`` in the task's direction."""
    if metric is None or not math.isfinite(metric):
        return False
    if best is None:
        return True
    return (metric - best > threshold) if maximize else (best - metric > threshold)
