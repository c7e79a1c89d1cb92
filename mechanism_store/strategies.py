"""Hypothesis strategies for the hook contract: spaces, proposals, histories, contexts, outcomes.

They generate every shape a level can hand a mechanism, including the awkward ones: empty spaces and
histories, long histories (hundreds of records), NaN / ±inf / None metrics, duplicate ids, all-failed
histories, baseline records without ``params``, unicode kinds, names and payload strings, degenerate ranges
(low == high), level-specific extra context keys, and proposals that repeat points already in the history.

What the levels guarantee is kept: parameter values in proposals and history records are valid for the space
(the policy validates every proposal before a hook sees it, and history holds only such proposals);
``frozen`` names belong to the space and leave at least one parameter free; the context's own proposals
never edit a frozen parameter.

Values are JSON-serialisable Python objects. NaN and ±inf appear only as metrics (history ``metric``,
outcome ``metric``); strict JSON, as the sandbox and ``records.json_safe`` write it, turns those into
``null``, so a mechanism must cope with both. Parameter values, bounds and ids are always finite.

``hook_inputs(hook)`` gives the positional JSON arguments of a hook *without* the ``rng``: callers append
``random.Random(seed)`` for the hooks in ``RNG_HOOKS``.
"""
from __future__ import annotations

import copy
import math
import random
from typing import Any

from hypothesis import strategies as st

from recur.core.mechanism_api import HOOKS, RNG_HOOKS

STATUSES = ("ok", "crash", "timeout", "nan", "oom", "void", "invalid")
FAILED = STATUSES[1:]
COMMON_NAMES = (
    "lr",
    "weight_decay",
    "batch_size",
    "depth",
    "warmup_ratio",
    "dropout",
    "family",
    "tenure",
    "β2",
    "学习率",
)

# Excluding the surrogates (Cs) is all a UTF-8 round trip needs; ``codec="utf-8"`` said the same again and cost
# every process about 4 s the first time a gate drew text (Hypothesis builds the codec's intervals at run time).
_TEXT_CHARS = st.characters(exclude_categories=("Cs",))


def texts(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Unicode text that survives a UTF-8 round trip (no lone surrogates)."""
    return st.text(_TEXT_CHARS, min_size=min_size, max_size=max_size)


def names() -> st.SearchStrategy[str]:
    """Parameter names: common ones (some non-ASCII) or arbitrary unicode."""
    return _NAMES


_NAMES = st.one_of(st.sampled_from(COMMON_NAMES), texts(min_size=1, max_size=8))


_FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


_COIN = st.booleans()
_LOG_LOW = st.floats(-6, 2)
_DECADES = st.one_of(st.just(0.0), st.floats(0, 4))
_LIN_LOW = st.floats(-1000, 1000)
_LIN_WIDTH = st.one_of(st.just(0.0), st.floats(0, 2000))
_INT_LOG_LOW = st.integers(1, 64)
_INT_LOW = st.integers(-100, 1000)
_INT_WIDTH = st.one_of(st.just(0), st.integers(0, 5000))
_CHOICES = st.lists(
    st.one_of(texts(max_size=8), st.integers(-5, 100)), min_size=1, max_size=6, unique_by=lambda v: (type(v).__name__, v)
)


@st.composite
def _float_spec(draw) -> dict[str, Any]:
    if draw(_COIN):
        low = 10.0 ** draw(_LOG_LOW)
        high = low * 10.0 ** draw(_DECADES)
        return {"type": "float", "low": low, "high": high, "log": True}
    low = draw(_LIN_LOW)
    return {"type": "float", "low": low, "high": low + draw(_LIN_WIDTH), "log": False}


@st.composite
def _int_spec(draw) -> dict[str, Any]:
    log = draw(_COIN)
    low = draw(_INT_LOG_LOW if log else _INT_LOW)
    return {"type": "int", "low": low, "high": low + draw(_INT_WIDTH), "log": log}


@st.composite
def _choice_spec(draw) -> dict[str, Any]:
    return {"type": "choice", "choices": draw(_CHOICES)}


def param_specs() -> st.SearchStrategy[dict[str, Any]]:
    """One space entry: float (linear/log), int (linear/log), choice or bool."""
    return _SPECS


_SPECS = st.one_of(_float_spec(), _int_spec(), _choice_spec(), st.just({"type": "bool"}))


def spaces(min_size: int = 0, max_size: int = 6) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    """``{NAME: {"type", "low", "high", "log" | "choices"}}``; may be empty; ranges may be degenerate."""
    if (min_size, max_size) == (0, 6):
        return _SPACES
    return st.dictionaries(_NAMES, _SPECS, min_size=min_size, max_size=max_size)


_SPACES = st.dictionaries(_NAMES, _SPECS, min_size=0, max_size=6)
_UNIT = st.floats(0.0, 1.0)
_SMALL = st.integers(0, 9)
_BIG_INT = st.integers(0, 2**20)
_MASK = st.integers(0, 2**16 - 1)
_EXTRA_KEYS = st.dictionaries(st.sampled_from(["description", "diff", "note", "源"]), texts(max_size=30), max_size=2)
_KIND_TEXT = st.one_of(texts(max_size=12), st.sampled_from(["tabu", "lr,wd", "", "baseline"]))
_RATIONALE = texts(max_size=40)


def _value(draw, spec: dict[str, Any]) -> Any:
    """A valid value for one parameter spec (inside the bounds, one of the choices).

    Drawn from a few prebuilt strategies and mapped onto the spec (building a strategy per spec is slow).
    """
    kind = spec.get("type")
    if kind == "bool":
        return draw(_COIN)
    if kind == "choice":
        choices = spec["choices"]
        return choices[draw(_BIG_INT) % len(choices)]
    low, high = spec["low"], spec["high"]
    if kind == "int":
        return low + draw(_BIG_INT) % (high - low + 1)
    u = draw(_UNIT)
    if spec.get("log") and low > 0:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return min(max(value, low), high)


def values(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy of valid values for one parameter spec."""
    return st.composite(lambda draw: _value(draw, spec))()


def _random_value(spec: dict[str, Any], rnd: random.Random) -> Any:
    """A valid value for ``spec`` from a plain ``random.Random`` (used to grow long histories cheaply)."""
    kind = spec.get("type")
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "choice":
        return rnd.choice(spec["choices"])
    if kind == "int":
        return rnd.randint(spec["low"], spec["high"])
    return rnd.uniform(spec["low"], spec["high"])


def _point(draw, space: dict[str, Any], exclude: Any = ()) -> dict[str, Any]:
    keys = [k for k in sorted(space) if k not in exclude]
    mask = draw(_MASK)
    return {name: _value(draw, space[name]) for i, name in enumerate(keys) if mask >> i & 1}


@st.composite
def points(draw, space: dict[str, Any], exclude: Any = ()) -> dict[str, Any]:
    """A valid ``params`` dict over a subset of the space (names in ``exclude`` left out)."""
    return _point(draw, space, exclude)


def _kind(draw, params: dict[str, Any]) -> str:
    if draw(_SMALL) < 7:
        return ",".join(sorted(params))
    return draw(_KIND_TEXT)


def _payload(draw, space: dict[str, Any], exclude: Any = ()) -> dict[str, Any]:
    payload: dict[str, Any] = {"params": _point(draw, space, exclude)}
    payload.update(draw(_EXTRA_KEYS))
    if draw(_SMALL) < 3:  # what level 1 stores: the proposal's rationale and the frozen list it was made under
        payload["rationale"] = draw(_RATIONALE)
        mask = draw(_MASK)
        payload["frozen"] = [n for i, n in enumerate(sorted(space)) if mask >> i & 1 and n not in payload["params"]]
    return payload


@st.composite
def payloads(draw, space: dict[str, Any]) -> dict[str, Any]:
    return _payload(draw, space)


def _proposal(draw, space: dict[str, Any], exclude: Any = ()) -> dict[str, Any]:
    payload = _payload(draw, space, exclude)
    return {"kind": _kind(draw, payload["params"]), "payload": payload, "rationale": draw(_RATIONALE)}


@st.composite
def proposal(draw, space: dict[str, Any]) -> dict[str, Any]:
    """One well-formed, valid proposal over ``space``."""
    return _proposal(draw, space)


def proposals(space: dict[str, Any], min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A list of well-formed proposals over ``space`` (kinds may be unicode or unrelated to the params)."""
    return st.lists(proposal(space), min_size=min_size, max_size=max_size)


_METRICS = st.one_of(
    st.none(),
    st.floats(0.5, 5.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0]),
)
_IDS = st.one_of(st.sampled_from(["t1", "t2", "t3"]), texts(min_size=1, max_size=10), st.integers(0, 50).map(lambda i: f"L1-{i:04d}"))
_PARENTS = st.one_of(st.none(), _IDS)
_OUTCOME_METRIC = st.one_of(_METRICS, st.floats(0.5, 5.0))
_LEVELS = st.integers(1, 3)
_SECONDS = st.floats(0, 1000)
_SEEDS = st.integers(0, 2**31 - 1)
_STATUS = st.sampled_from(STATUSES)
_FAILED_STATUS = st.sampled_from(FAILED)


@st.composite
def record(draw, space: dict[str, Any], failed_only: bool = False) -> dict[str, Any]:
    """One history record ``{id, level, parent, kind, payload, metric, cost, status, seed, kept}``."""
    return _record(draw, space, failed_only)


def _record(draw, space: dict[str, Any], failed_only: bool = False) -> dict[str, Any]:
    if draw(_SMALL) == 0:  # a level's baseline trial: no params at all
        payload: dict[str, Any] = {"baseline": True}
        kind = "baseline"
    else:
        payload = _payload(draw, space)
        kind = _kind(draw, payload["params"])
    if failed_only:
        status, metric, kept = draw(_FAILED_STATUS), None, False
    else:
        status, metric, kept = draw(_STATUS), draw(_METRICS), draw(st.booleans())
    return {
        "id": draw(_IDS),
        "level": draw(_LEVELS),
        "parent": draw(_PARENTS),
        "kind": kind,
        "payload": payload,
        "metric": metric,
        "cost": {"trials": 1, "seconds": draw(_SECONDS)},
        "status": status,
        "seed": draw(_SEEDS),
        "kept": kept,
    }


_HISTORY_SHAPE = st.integers(0, 4)
_SHORT_LEN = st.integers(0, 12)
_FAILED_LEN = st.integers(1, 25)
_TEMPLATES = st.integers(1, 4)
_LONG_LEN = st.integers(100, 500)
_RNG_SEED = st.integers(0, 2**32 - 1)
_PROPOSALS_LEN = st.integers(0, 8)
_STEP = st.one_of(st.integers(0, 50), st.integers(0, 100000))
_BEST = st.one_of(st.none(), st.floats(0.5, 5.0), _FINITE)
_GUIDANCE = st.lists(texts(max_size=60), max_size=3)
_THRESHOLD = st.one_of(st.just(0.0), st.floats(0.0, 0.2), _FINITE)


def _long_history(draw, space: dict[str, Any]) -> list[dict[str, Any]]:
    """Hundreds of records grown from a few drawn templates with a seeded ``random.Random`` (cheap to draw)."""
    templates = [_record(draw, space) for _ in range(draw(_TEMPLATES))]
    n = draw(_LONG_LEN)
    rnd = random.Random(draw(_RNG_SEED))
    keys = sorted(space)
    out = []
    metric = rnd.uniform(1.0, 4.0)
    for i in range(n):
        rec = copy.deepcopy(rnd.choice(templates))
        rec["id"] = f"L1-{i:05d}" if rnd.random() < 0.95 else rec["id"]
        if keys and "params" in rec["payload"] and rnd.random() < 0.7:
            chosen = rnd.sample(keys, rnd.randint(1, min(3, len(keys))))
            rec["payload"]["params"] = {name: _random_value(space[name], rnd) for name in chosen}
            rec["kind"] = ",".join(sorted(chosen))
        rec["status"] = "ok" if rnd.random() < 0.8 else rnd.choice(FAILED)
        if rec["status"] == "ok":
            metric += rnd.gauss(0.0, 0.05)
            rec["metric"] = metric
            rec["kept"] = rnd.random() < 0.15
        else:
            rec["metric"] = None
            rec["kept"] = False
        out.append(rec)
    return out


def _history(draw, space: dict[str, Any]) -> list[dict[str, Any]]:
    shape = draw(_HISTORY_SHAPE)
    if shape == 0:
        return []
    if shape == 1:
        return [_record(draw, space) for _ in range(draw(_SHORT_LEN))]
    if shape == 2:
        return [_record(draw, space, True) for _ in range(draw(_FAILED_LEN))]
    if shape == 3:
        base = [_record(draw, space) for _ in range(draw(_TEMPLATES))]
        return base + copy.deepcopy(base)
    return _long_history(draw, space)


@st.composite
def histories(draw, space: dict[str, Any]) -> list[dict[str, Any]]:
    """Empty, short, all-failed, duplicated-id and long (100-500 records) histories over ``space``."""
    return _history(draw, space)


def _proposals_with_repeats(
    draw, space: dict[str, Any], history: list[dict[str, Any]], min_size: int = 0, exclude: Any = ()
) -> list[dict[str, Any]]:
    """Proposals, some of which re-propose points already in the history (so tabu-like code has work).

    Names in ``exclude`` (the frozen ones) are never edited, as the policy guarantees before ``propose``.
    """
    fresh = [_proposal(draw, space, exclude) for _ in range(max(draw(_PROPOSALS_LEN), min_size))]
    repeatable = [
        r for r in history
        if isinstance(r["payload"].get("params"), dict) and not set(r["payload"]["params"]) & set(exclude)
    ]
    if repeatable and draw(_COIN):
        for _ in range(1 + draw(_SMALL) % 3):
            old = repeatable[draw(_BIG_INT) % len(repeatable)]
            fresh.append({"kind": old["kind"], "payload": copy.deepcopy(old["payload"]), "rationale": "repeat"})
        random.Random(draw(_RNG_SEED)).shuffle(fresh)
    return fresh


_LEVEL1_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "task": texts(max_size=80),
        "metric_name": st.sampled_from(["val_bpb", "score", "Δ"]),
        "source": texts(max_size=400),
        "editable": st.just("train.py"),
    },
)


@st.composite
def contexts(draw) -> dict[str, Any]:
    """A full ``context``: level, step, space, frozen, guidance, incumbent, best_metric, maximize, proposals, history.

    ``frozen`` is a subset of the space that leaves at least one parameter free; ``proposals`` are valid and
    never edit a frozen parameter (the policy filters them before any hook runs). Level-specific extra keys
    (``task``, ``source``, ...) appear sometimes: hooks must pass them through.
    """
    space = draw(_SPACES)
    history = _history(draw, space)
    keys = sorted(space)
    mask = draw(_MASK)
    frozen = [name for i, name in enumerate(keys) if mask >> i & 1]
    if keys and len(frozen) == len(keys):
        frozen.pop(draw(_BIG_INT) % len(frozen))
    mask = draw(_MASK)
    incumbent = {name: _value(draw, space[name]) for i, name in enumerate(keys) if not mask >> i & 1}
    context = {
        "level": draw(_LEVELS),
        "step": len(history) if draw(_COIN) else draw(_STEP),
        "space": space,
        "frozen": frozen,
        "guidance": draw(_GUIDANCE),
        "incumbent": incumbent,
        "best_metric": draw(_BEST),
        "maximize": draw(_COIN),
        "proposals": _proposals_with_repeats(draw, space, history, exclude=frozen),
        "history": history,
    }
    context.update(draw(_LEVEL1_EXTRAS))
    return context


@st.composite
def outcomes(draw) -> dict[str, Any]:
    """``{metric, status, best_metric, incumbent_metric, default_keep, maximize, step[, threshold]}``.

    ``metric`` may be NaN/inf/None; ``threshold`` (the level's noise threshold) is present sometimes.
    """
    best = draw(_BEST)
    incumbent = best if draw(_COIN) else draw(_BEST)
    out = {
        "metric": draw(_OUTCOME_METRIC),
        "status": draw(_STATUS),
        "best_metric": best,
        "incumbent_metric": incumbent,
        "default_keep": draw(_COIN),
        "maximize": draw(_COIN),
        "step": draw(_STEP),
    }
    if draw(_COIN):
        out["threshold"] = draw(_THRESHOLD)
    return out


@st.composite
def _filter_args(draw, non_empty: bool) -> list[Any]:
    space = draw(_SPACES)
    history = _history(draw, space)
    return [_proposals_with_repeats(draw, space, history, min_size=1 if non_empty else 0), history]


@st.composite
def _accept_args(draw) -> list[Any]:
    return [draw(outcomes()), _history(draw, draw(_SPACES))]


def hook_inputs(hook_name: str) -> st.SearchStrategy[list[Any]]:
    """The positional JSON arguments of ``hook_name`` (rng excluded; see ``RNG_HOOKS``).

    guide: ``[context]``; propose: ``[context]``; filter: ``[proposals, history]``;
    select: ``[proposals (non-empty), history]``; accept: ``[outcome, history]``.
    """
    if hook_name not in HOOKS:
        raise ValueError(f"unknown hook {hook_name!r}; hooks are {', '.join(HOOKS)}")
    if hook_name in ("guide", "propose"):
        return contexts().map(lambda c: [c])
    if hook_name == "filter":
        return _filter_args(non_empty=False)
    if hook_name == "select":
        return _filter_args(non_empty=True)
    return _accept_args()


__all__ = [
    "FAILED",
    "RNG_HOOKS",
    "STATUSES",
    "contexts",
    "histories",
    "hook_inputs",
    "names",
    "outcomes",
    "param_specs",
    "points",
    "proposal",
    "proposals",
    "record",
    "spaces",
    "texts",
    "values",
]
