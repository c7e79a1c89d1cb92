"""Tabu memory of recently tried regions (tabu search, combinatorial optimisation).

``filter`` drops every proposal whose (kind, bucketed params) region matches one of the last ``tenure``
history records, and duplicates inside the batch. Failed trials count as tried (repeating a crash is as
wasteful as repeating a flop).

Buckets. ``filter`` receives ``(proposals, history)`` only, not the space, so the scale of each parameter is
inferred from the values in the tabu window and the batch:

* numbers that are all positive and span at least ``log_ratio`` (max/min) are bucketed on a log scale,
  ``log_buckets_per_decade`` buckets per factor of ten;
* other numbers are bucketed linearly, bucket width ``max(span / linear_buckets, min_relative * max|v|)``;
* strings, booleans, choices and anything else must match exactly.

If every proposal is tabu: with ``aspiration`` = 1 the proposal whose last match is the oldest is kept (a
subset of one); with ``aspiration`` = 0 the result is empty and the hook runner falls back to the default
(all proposals). Memory is derived from ``history`` only.
"""
import json
import math

from recur.core.mechanism_api import Mechanism, record_params


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _kind(item):
    if not isinstance(item, dict):
        return ""
    kind = item.get("kind")
    if isinstance(kind, str):
        return kind
    return json.dumps(kind, sort_keys=True, default=str)


def _scales(points, linear_buckets, per_decade, min_relative, log_ratio):
    values = {}
    for params in points:
        for name in params:
            value = params[name]
            if _is_number(value):
                values.setdefault(str(name), []).append(float(value))
    scales = {}
    for name in values:
        vals = values[name]
        low = min(vals)
        high = max(vals)
        if low > 0 and high / low >= log_ratio:
            scales[name] = ["log", per_decade]
            continue
        biggest = max(abs(low), abs(high))
        width = max((high - low) / max(linear_buckets, 1), min_relative * biggest)
        if width <= 0 or not math.isfinite(width):
            scales[name] = ["exact", 0]
        else:
            scales[name] = ["lin", width]
    return scales


def _bucket(value, scale):
    if not _is_number(value) or scale is None:
        return json.dumps(value, sort_keys=True, default=str)
    value = float(value)
    mode = scale[0]
    if mode == "log" and value > 0:
        return "log:" + str(math.floor(math.log10(value) * scale[1]))
    if mode == "lin":
        step = value / scale[1]
        if math.isfinite(step):
            return "lin:" + str(math.floor(step))
    return "num:" + repr(value)


def _key(item, scales):
    params = record_params(item)
    parts = []
    for name in sorted([str(n) for n in params]):
        parts.append([name, _bucket(params.get(name), scales.get(name))])
    return json.dumps([_kind(item), parts], sort_keys=True, default=str)


class Tabu(Mechanism):
    """Drop proposals that revisit a region tried in the last ``tenure`` trials (or repeat one in the batch)."""

    PARAMS = {
        "tenure": 20,
        "linear_buckets": 10,
        "log_buckets_per_decade": 4,
        "min_relative": 0.01,
        "log_ratio": 10.0,
        "include_failed": 1,
        "drop_duplicates": 1,
        "aspiration": 1,
    }

    def filter(self, proposals, history):
        p = self.PARAMS
        tenure = max(int(p.get("tenure", 20)), 0)
        window = []
        if tenure > 0:
            for record in history[-tenure:]:
                if not isinstance(record, dict):
                    continue
                if not int(p.get("include_failed", 1)) and record.get("status") != "ok":
                    continue
                window.append(record)
        points = [record_params(r) for r in window] + [record_params(q) for q in proposals]
        scales = _scales(
            points,
            int(p.get("linear_buckets", 10)),
            float(p.get("log_buckets_per_decade", 4)),
            float(p.get("min_relative", 0.01)),
            float(p.get("log_ratio", 10.0)),
        )
        last_seen = {}
        for index in range(len(window)):
            last_seen[_key(window[index], scales)] = index
        kept = []
        batch = {}
        best_tabu = None
        best_age = None
        for proposal in proposals:
            key = _key(proposal, scales)
            if key in last_seen:
                age = last_seen[key]
                if best_age is None or age < best_age:
                    best_age = age
                    best_tabu = proposal
                continue
            if int(p.get("drop_duplicates", 1)) and key in batch:
                continue
            batch[key] = True
            kept.append(proposal)
        if not kept and best_tabu is not None and int(p.get("aspiration", 1)):
            return [best_tabu]
        return kept
