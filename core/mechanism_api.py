"""The hook API a mechanism module imports: ``from recur.core.mechanism_api import Mechanism``.

This is the only recur module a mechanism may import (the static policy allows it and the standard-library
allowlist, nothing else). It holds no loop objects on purpose: hooks see and return JSON only.

Contract (the same at every level, docs/protocol.md has how calls and effects are counted):

* ``guide(context) -> context``                 edit the policy's context (guidance, frozen parameters)
* ``propose(context, rng) -> list[proposal]``   add to or replace ``context["proposals"]``
* ``filter(proposals, history) -> list``        drop proposals; must return a subset
* ``select(proposals, history, rng) -> proposal``  choose one of its inputs
* ``accept(outcome, history, rng) -> bool``     keep or discard beyond the default gate; where
  ``outcome["veto_only"]`` is set (level >= 2, where keeping is promoting) only a discard counts

Hooks must be pure: the same JSON in and the same seed give the same answer. All memory a mechanism needs
(tabu lists, bandit counts, elite archives) is derived from ``history``, which is what makes a killed run
resume to the same result and lets the sandbox restart a worker at any time.

Shapes: a *proposal* is ``{"kind": str, "payload": {"params": {name: value}, ...}, "rationale": str}``;
a *history record* is ``{id, level, parent, kind, payload, metric, cost, status, seed, kept}``;
``context`` carries ``level, step, space, frozen, guidance, incumbent, best_metric, maximize, proposals, history``.
"""
from __future__ import annotations

import math
import random
from typing import Any

HOOKS: dict[str, int] = {"guide": 1, "propose": 2, "filter": 2, "select": 3, "accept": 3}
"""Hook name -> number of positional arguments after ``self`` (the static policy checks the arity)."""
RNG_HOOKS = frozenset({"propose", "select", "accept"})
"""Hooks whose last parameter is ``rng``: the sandbox appends ``random.Random(seed)`` to the JSON args."""
ALLOWED_MODULES: tuple[str, ...] = (
    "math", "random", "statistics", "collections", "collections.abc", "itertools", "heapq", "bisect",
    "functools", "dataclasses", "typing", "enum", "json",
)
"""The standard modules a mechanism may import (besides this one): the static policy checks imports against
it and the sandbox worker enforces it at run time, both from this one tuple."""


class Mechanism:
    """Base class of every mechanism. A subclass overrides any subset of the hooks; the rest stay defaults.

    ``PARAMS`` holds the mechanism's tunable constants so a level can port or re-parameterise it.
    """

    PARAMS: dict[str, Any] = {}

    def guide(self, context: dict) -> dict:
        return context

    def propose(self, context: dict, rng: random.Random) -> list:
        return list(context.get("proposals", []))

    def filter(self, proposals: list, history: list) -> list:
        return list(proposals)

    def select(self, proposals: list, history: list, rng: random.Random) -> dict:
        return proposals[0]

    def accept(self, outcome: dict, history: list, rng: random.Random) -> bool:
        return bool(outcome.get("default_keep", False))


def overridden_hooks(cls: type) -> list[str]:
    """Names of the hooks a Mechanism subclass actually defines (only these are counted for activation)."""
    return [name for name in HOOKS if any(name in vars(klass) for klass in cls.__mro__ if klass is not Mechanism and klass is not object)]


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers a mechanism may use (JSON in, JSON out, no I/O), so a mechanism says only what is new in it.
# An *axis* is ``[type, low, high, log, choices]``: numbers map to [0, 1] (log scale where the space says log),
# choices (and bools) to the centre of their index's cell.

def is_number(value: Any) -> bool:
    """A finite int or float, never a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (metrics of failed trials)."""
    return float(value) if is_number(value) else None


def axis(spec: Any) -> list | None:
    """The axis of one space entry, or None when the entry is unusable."""
    if not isinstance(spec, dict):
        return None
    kind = spec.get("type")
    if kind == "bool":
        return ["choice", 0.0, 1.0, False, [False, True]]
    if kind == "choice":
        choices = spec.get("choices")
        return ["choice", 0.0, 1.0, False, list(choices)] if isinstance(choices, list) and choices else None
    if kind not in ("float", "int") or not is_number(spec.get("low")) or not is_number(spec.get("high")):
        return None
    low, high = sorted((float(spec["low"]), float(spec["high"])))
    if kind == "int":
        low, high = float(math.ceil(low)), float(math.floor(high))
        if high < low:
            return None
    return [kind, low, high, bool(spec.get("log", False)) and low > 0, None]


def free_axes(context: dict) -> dict:
    """Name -> axis of every usable, non-frozen parameter of ``context["space"]``."""
    space = context.get("space")
    if not isinstance(space, dict):
        return {}
    frozen = {str(n) for n in (context.get("frozen") or [])}
    out = {}
    for name in sorted(str(n) for n in space):
        found = axis(space[name])
        if found is not None and name not in frozen:
            out[name] = found
    return out


def to_unit(value: Any, ax: list) -> float:
    """Position of ``value`` on ``ax`` in [0, 1] (0.5 for a value the axis does not know)."""
    if ax[0] == "choice":
        for i, choice in enumerate(ax[4]):
            if choice == value and type(choice) is type(value):
                return (i + 0.5) / len(ax[4])
        return 0.5
    if not is_number(value):
        return 0.5
    low, high, value = ax[1], ax[2], float(value)
    if ax[3]:
        if value <= 0:
            return 0.0
        low, high, value = math.log(low), math.log(high), math.log(value)
    if high <= low:
        return 0.5
    return min(max((value - low) / (high - low), 0.0), 1.0)


def known_unit(value: Any, ax: list) -> float | None:
    """``to_unit`` for a value the axis knows (a listed choice, a number); None otherwise, so a caller can skip it."""
    if ax[0] == "choice":
        known = any(choice == value and type(choice) is type(value) for choice in ax[4])
    else:
        known = is_number(value)
    return to_unit(value, ax) if known else None


def from_unit(u: float, ax: list) -> Any:
    """The value at position ``u`` of ``ax`` (ints rounded, floats to 6 significant digits, clipped)."""
    u = min(max(float(u), 0.0), 1.0)
    if ax[0] == "choice":
        return ax[4][min(int(u * len(ax[4])), len(ax[4]) - 1)]
    low, high = ax[1], ax[2]
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if ax[3] else low + u * (high - low)
    if ax[0] == "int":
        return int(min(max(round(value), low), high))
    return min(max(float("%.6g" % value), low), high)


def record_params(record: Any) -> dict:
    """The parameters a history record edited (``payload.params``), or {}."""
    payload = record.get("payload") if isinstance(record, dict) else None
    params = payload.get("params") if isinstance(payload, dict) else None
    return params if isinstance(params, dict) else {}


def observations(history: list, incumbent: dict, axes: dict, maximize: bool = False) -> list:
    """``[loss, point, record]`` for every ok record with a finite metric, lower loss better (the metric, negated
    when maximising). ``point`` is the full parameter point the trial ran: ``payload.point`` where level 1 recorded
    it, else rebuilt from the edits (the record's own, then the latest kept ones, then the current incumbent)."""
    state: dict = {}
    out = []
    for record in history:
        if not isinstance(record, dict):
            continue
        edits = record_params(record)
        metric = finite(record.get("metric"))
        if record.get("status") == "ok" and metric is not None:
            recorded = (record.get("payload") or {}).get("point")
            point = {}
            for name in axes:
                if isinstance(recorded, dict) and name in recorded:
                    point[name] = recorded[name]
                elif name in edits:
                    point[name] = edits[name]
                elif name in state:
                    point[name] = state[name]
                elif name in incumbent:
                    point[name] = incumbent[name]
            out.append([-metric if maximize else metric, point, record])
        if record.get("kept") is True:
            state.update(edits)
    return out


def begin(context: dict) -> tuple:
    """What a ``propose`` hook starts from: a copy of the policy's proposals, the free axes and the incumbent
    point (None when the context has no usable one; the hook then returns the proposals unchanged)."""
    incumbent = context.get("incumbent")
    return list(context.get("proposals") or []), free_axes(context), incumbent if isinstance(incumbent, dict) else None


def begin_model(context: dict, min_obs: int) -> tuple:
    """``begin`` plus the run's observations, for a model-based ``propose``: ``(proposals, axes, incumbent,
    observations)``, the observations None (return the proposals unchanged) without an incumbent, free axes or
    ``min_obs`` (at least 2) ok trials to model."""
    proposals, axes, incumbent = begin(context)
    if incumbent is None or not axes:
        return proposals, axes, incumbent, None
    obs = observations(context.get("history") or [], incumbent, axes, bool(context.get("maximize")))
    return proposals, axes, incumbent, (obs if len(obs) >= max(int(min_obs), 2) else None)


def changes(point: dict, incumbent: dict) -> dict:
    """The entries of ``point`` that differ from ``incumbent`` (what a proposal's ``params`` should hold)."""
    return {k: v for k, v in point.items() if k not in incumbent or incumbent[k] != v or type(incumbent[k]) is not type(v)}


def lead(mine: list, proposals: list, step: int, every: int) -> list:
    """Put a mechanism's own proposals first every ``every``-th step (the default selector tries the first), and
    after the policy's otherwise; ``every`` = 1 always leads, 0 never."""
    if every > 0 and step % every == 0:
        return list(mine) + list(proposals)
    return list(proposals) + list(mine)


# A small Gaussian process, because a model-based mechanism needs regression the allowlist lacks (no numpy in
# the sandbox). Pure Python and O(n^3) in the points it is fitted to: a mechanism fits a few dozen.

def _kernel(a: list, b: list, categorical: list, lengthscale: float) -> float:
    total = 0.0
    scale = 1.0 / (lengthscale * lengthscale)
    for x, y, cat in zip(a, b, categorical):
        if cat:
            total += 0.0 if x == y else 1.0
        else:
            total += (x - y) * (x - y) * scale
    return math.exp(-0.5 * total)


def gp_fit(points: list, values: list, categorical: list, lengthscale: float = 0.25, noise: float = 0.05) -> dict:
    """Fit a Gaussian process (squared-exponential kernel on unit coordinates, a categorical coordinate adding
    distance 1 when it differs; values standardised; ``noise`` the noise variance relative to the signal's).
    Returns the model ``gp_predict`` reads; an empty model for no points."""
    n = len(points)
    mean = math.fsum(values) / n if n else 0.0
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n) if n else 1.0
    spread = spread if spread > 1e-12 else 1.0
    ys = [(v - mean) / spread for v in values]
    ls = max(float(lengthscale), 1e-3)
    gram = [[_kernel(a, b, categorical, ls) for b in points] for a in points]
    jitter = max(float(noise), 1e-8)
    while True:  # Cholesky factor of K + jitter*I; a failure (not positive definite in floats) raises the jitter
        chol = _cholesky(gram, jitter)
        if chol is not None:
            break
        jitter *= 10.0
    alpha = _back(chol, _forward(chol, ys))
    return {"points": [list(p) for p in points], "chol": chol, "alpha": alpha, "mean": mean, "spread": spread,
            "categorical": list(categorical), "lengthscale": ls}


def _cholesky(gram: list, jitter: float) -> list | None:
    n = len(gram)
    chol: list = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row_i = chol[i]
        for j in range(i + 1):
            row_j = chol[j]
            s = gram[i][j]
            for k in range(j):
                s -= row_i[k] * row_j[k]
            if i == j:
                s += jitter
                if s <= 0.0:
                    return None
                row_i[i] = math.sqrt(s)
            else:
                row_i[j] = s / row_j[j]
    return chol


def _forward(chol: list, b: list) -> list:
    out: list = []
    for i, row in enumerate(chol):
        s = b[i]
        for k in range(i):
            s -= row[k] * out[k]
        out.append(s / row[i])
    return out


def _back(chol: list, b: list) -> list:
    n = len(b)
    out = [0.0] * n
    for i in range(n - 1, -1, -1):
        out[i] = (b[i] - sum(chol[k][i] * out[k] for k in range(i + 1, n))) / chol[i][i]
    return out


def gp_predict(model: dict, point: list) -> tuple:
    """(mean, standard deviation) of the model at ``point``, in the units of the fitted values."""
    pts = model["points"]
    if not pts:
        return 0.0, 1.0
    ks = [_kernel(point, p, model["categorical"], model["lengthscale"]) for p in pts]
    mu = sum(k * a for k, a in zip(ks, model["alpha"]))
    v = _forward(model["chol"], ks)
    var = max(1.0 - sum(x * x for x in v), 1e-12)
    return model["mean"] + model["spread"] * mu, model["spread"] * math.sqrt(var)


def expected_improvement(mean: float, sd: float, best: float) -> float:
    """Expected improvement below ``best`` (lower is better) of a normal belief (mean, sd)."""
    if sd <= 0.0:
        return max(best - mean, 0.0)
    z = (best - mean) / sd
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (best - mean) * cdf + sd * pdf


__all__ = ["HOOKS", "Mechanism", "overridden_hooks", "is_number", "finite", "axis", "free_axes", "to_unit",
           "known_unit", "from_unit", "record_params", "observations", "begin", "begin_model", "changes", "lead", "gp_fit",
           "gp_predict", "expected_improvement"]
