"""Built-in mechanism families: the template library of the offline research policy.

Each family is a standalone module in this folder, written exactly as an LLM-written mechanism must be (it
passes the same static policy, property tests and sandbox). ``BUILTIN_FAMILIES`` describes them for the
policy (which hooks, which tunables with ranges, which trace diagnoses they answer); ``render(slug, params)``
turns a *mechanism specification* (a family plus concrete parameters) into module source by rewriting the
class-level ``PARAMS`` literal with libcst, leaving the rest of the module byte for byte as it is.

Diagnosis tags (what the offline policy reads off a trace): ``repeats`` (the same points are tried again),
``stagnation`` (no kept improvement for a while), ``narrow-exploration`` (few parameters / kinds explored),
``crashes`` (many failed trials), ``exploitation`` (good points found but not built upon).
"""
from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import libcst as cst

DIAGNOSES = ("repeats", "stagnation", "narrow-exploration", "crashes", "exploitation")


def _i(low: int, high: int, default: int) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, "default": default}


def _f(low: float, high: float, default: float) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "default": default}


BUILTIN_FAMILIES: dict[str, dict[str, Any]] = {
    "tabu": {
        "hooks": ["filter"],
        "params": {
            "tenure": _i(1, 500, 20),
            "linear_buckets": _i(2, 100, 10),
            "log_buckets_per_decade": _i(1, 20, 4),
            "min_relative": _f(0.0, 0.5, 0.01),
            "log_ratio": _f(2.0, 1000.0, 10.0),
            "include_failed": _i(0, 1, 1),
            "drop_duplicates": _i(0, 1, 1),
            "aspiration": _i(0, 1, 1),
        },
        "summary": "Tabu memory: drop proposals that revisit a (kind, bucketed-params) region tried in the last "
        "`tenure` trials, or repeat one in the batch.",
        "answers": ["repeats", "crashes"],
    },
    "ucb_bandit": {
        "hooks": ["select"],
        "params": {
            "exploration": _f(0.0, 5.0, 1.0),
            "window": _i(0, 10000, 200),
            "split_kinds": _i(0, 1, 1),
            "fail_penalty": _f(0.0, 1.0, 0.25),
            "unseen_bonus": _f(1.0, 1000000.0, 1000.0),
        },
        "summary": "UCB1 bandit over proposal kinds (reward: kept trial, penalty: failed trial); select the "
        "proposal whose kind scores highest, untried kinds first.",
        "answers": ["narrow-exploration", "exploitation"],
    },
    "latin_hypercube": {
        "hooks": ["propose"],
        "params": {
            "n": _i(1, 32, 4),
            "radius": _f(0.01, 0.5, 0.25),
            "dims": _i(0, 32, 3),
            "lead_every": _i(0, 10, 2),
            "replace": _i(0, 1, 0),
        },
        "summary": "Propose the points of a Latin hypercube over up to `dims` free parameters, within `radius` of "
        "each range around the incumbent, one design per block of `n` turns (log/int/choice aware).",
        "answers": ["narrow-exploration", "repeats"],
    },
    "annealing": {
        "hooks": ["accept"],
        "params": {
            "t0": _f(0.01, 10.0, 0.5),
            "decay": _f(0.5, 0.9999, 0.93),
            "t_min": _f(1e-06, 0.5, 0.001),
            "max_delta": _f(0.1, 10.0, 3.0),
            "window": _i(3, 1000, 50),
            "relative_scale": _f(1e-05, 1.0, 0.01),
        },
        "summary": "Simulated-annealing acceptance: keep a worse ok result with probability exp(-delta/T), "
        "T = t0 * decay**step; never keep failures.",
        "answers": ["stagnation"],
    },
    "restart": {
        "hooks": ["propose", "accept"],
        "params": {
            "patience": _i(2, 200, 8),
            "cooldown": _i(1, 200, 4),
            "n": _i(1, 8, 1),
            "min_distance": _f(0.05, 0.9, 0.3),
            "dims": _i(0, 32, 0),
            "pool": _i(1, 256, 16),
            "memory": _i(0, 1000, 50),
            "keep_restart": _i(0, 1, 1),
        },
        "summary": "After `patience` trials without a kept improvement, replace the proposals with a restart point "
        "far from the incumbent, in the least explored region, and keep its result to move the search there.",
        "answers": ["stagnation", "narrow-exploration"],
    },
    "elite_crossover": {
        "hooks": ["propose"],
        "params": {
            "elites": _i(1, 20, 3),
            "diverse": _i(0, 20, 2),
            "pool_fraction": _f(0.05, 1.0, 0.5),
            "children": _i(1, 8, 2),
            "mutation_rate": _f(0.0, 1.0, 0.3),
            "sigma": _f(0.0, 0.5, 0.1),
            "lead_every": _i(0, 10, 2),
        },
        "summary": "GEAR-style elite archive (best + diverse) from history; add uniform-crossover children of two "
        "elites with a small mutation.",
        "answers": ["exploitation", "stagnation"],
    },
    "freeze_guidance": {
        "hooks": ["guide"],
        "params": {
            "window": _i(2, 100, 10),
            "min_tries": _i(1, 50, 3),
            "rest": _i(0, 500, 15),
            "min_free": _i(1, 20, 2),
        },
        "summary": "Level 1.5: freeze parameters whose recent edits never helped, unfreeze rested ones, and add a "
        "guidance line; touches only `frozen` and `guidance`.",
        "answers": ["crashes", "exploitation"],
    },
    "tpe": {
        "hooks": ["propose"],
        "params": {
            "gamma": _f(0.05, 0.5, 0.25),
            "candidates": _i(1, 128, 24),
            "bandwidth": _f(0.01, 0.5, 0.12),
            "prior": _f(0.01, 10.0, 1.0),
            "min_obs": _i(2, 100, 6),
            "local": _i(0, 1, 1),
            "lead_every": _i(0, 10, 1),
        },
        "summary": "Model-based proposals (tree-structured Parzen estimator): split the run's trials into good and "
        "bad, propose the sampled point with the best good/bad density ratio.",
        "answers": ["stagnation", "exploitation", "narrow-exploration"],
    },
    "gp_ei": {
        "hooks": ["propose"],
        "params": {
            "lengthscale": _f(0.02, 2.0, 0.25),
            "noise": _f(1e-06, 1.0, 0.05),
            "candidates": _i(1, 256, 48),
            "max_points": _i(2, 80, 40),
            "step": _f(0.01, 0.5, 0.15),
            "dims": _i(1, 32, 3),
            "min_obs": _i(2, 100, 6),
            "lead_every": _i(0, 10, 1),
        },
        "summary": "Bayesian optimisation in a trust region: a Gaussian process fitted to the trials nearest the "
        "incumbent; propose the local move with the highest expected improvement.",
        "answers": ["stagnation", "exploitation", "narrow-exploration"],
    },
    "trust_region": {
        "hooks": ["propose"],
        "params": {
            "sigma0": _f(0.005, 0.5, 0.15),
            "grow": _f(1.0, 4.0, 1.5),
            "min_sigma": _f(0.0001, 0.2, 0.005),
            "max_sigma": _f(0.01, 1.0, 0.5),
            "dims": _i(0, 32, 0),
            "switch": _f(0.0, 1.0, 0.1),
            "lead_every": _i(0, 10, 1),
        },
        "summary": "Step-size adaptation ((1+1)-ES, one-fifth success rule): a Gaussian step around the incumbent "
        "that grows after kept trials and shrinks after the rest.",
        "answers": ["stagnation", "exploitation"],
    },
    "line_search": {
        "hooks": ["propose"],
        "params": {
            "step0": _f(0.01, 0.5, 0.2),
            "expand": _f(1.0, 4.0, 1.5),
            "shrink": _f(0.1, 0.9, 0.5),
            "min_step": _f(0.0001, 0.2, 0.01),
            "lead_every": _i(0, 10, 1),
        },
        "summary": "Coordinate line search on the parameter most correlated with the metric, with a per-parameter "
        "step that grows on success and halves when both directions fail.",
        "answers": ["exploitation", "narrow-exploration"],
    },
    "categorical_sweep": {
        "hooks": ["propose"],
        "params": {
            "resweep": _i(0, 100, 0),
            "lead_every": _i(0, 10, 1),
        },
        "summary": "Try every value of every choice parameter once, one change of the incumbent at a time.",
        "answers": ["narrow-exploration", "repeats"],
    },
}

_DIR = Path(__file__).resolve().parent


def builtin_source(slug: str) -> str:
    """The module source of built-in family ``slug`` (KeyError for an unknown slug)."""
    if slug not in BUILTIN_FAMILIES:
        raise KeyError(f"unknown built-in mechanism {slug!r}; known: {', '.join(sorted(BUILTIN_FAMILIES))}")
    return (_DIR / f"{slug}.py").read_text(encoding="utf-8")


def builtin_params(slug: str) -> dict[str, Any]:
    """The ``PARAMS`` literal of ``slug``'s module as it is on disk (read with ``ast``, nothing imported)."""
    return params_of_source(builtin_source(slug))


def params_of_source(source: str) -> dict[str, Any]:
    """The class-level ``PARAMS`` dict literal of the (single) Mechanism subclass in ``source``; {} if none."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id == "PARAMS"
                ):
                    return ast.literal_eval(stmt.value)
    return {}


def validate_params(slug: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the family's ranges; return the full parameter set (defaults filled in).

    Raises ``KeyError`` for an unknown family and ``ValueError`` naming the offending parameter otherwise.
    Ints accept integral floats (``5.0``); booleans are never numbers here.
    """
    if slug not in BUILTIN_FAMILIES:
        raise KeyError(f"unknown built-in mechanism {slug!r}")
    specs = BUILTIN_FAMILIES[slug]["params"]
    if not isinstance(params, dict):
        raise ValueError(f"{slug}: params must be a dict, got {type(params).__name__}")
    unknown = sorted(str(k) for k in params if k not in specs)
    if unknown:
        raise ValueError(f"{slug}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        value = params.get(name, spec["default"])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{slug}.{name}: expected a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{slug}.{name}: expected a finite number, got {value!r}")
        if spec["type"] == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{slug}.{name}: expected an int, got {value!r}")
                value = int(value)
        else:
            value = float(value)
        if not spec["low"] <= value <= spec["high"]:
            raise ValueError(f"{slug}.{name}={value!r} is outside [{spec['low']}, {spec['high']}]")
        out[name] = value
    return out


class _ParamsRewriter(cst.CSTTransformer):
    """Replace the values of the class-level ``PARAMS = {...}`` dict literal, keeping its layout."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.class_depth = 0
        self.function_depth = 0
        self.rewritten = 0
        self.seen: set[str] = set()

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.class_depth += 1
        return True

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.class_depth -= 1
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.function_depth += 1
        return True

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self.function_depth -= 1
        return updated

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        if self.class_depth != 1 or self.function_depth != 0:
            return updated
        if len(updated.targets) != 1:
            return updated
        target = updated.targets[0].target
        if not (isinstance(target, cst.Name) and target.value == "PARAMS" and isinstance(updated.value, cst.Dict)):
            return updated
        elements = []
        for element in updated.value.elements:
            if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
                key = element.key.evaluated_value
                if key in self.values:
                    self.seen.add(key)
                    element = element.with_changes(value=cst.parse_expression(repr(self.values[key])))
            elements.append(element)
        self.rewritten += 1
        return updated.with_changes(value=updated.value.with_changes(elements=elements))


def render(slug: str, params: dict[str, Any] | None = None) -> str:
    """Source of family ``slug`` with its ``PARAMS`` literal set to ``params`` (validated; defaults fill gaps)."""
    values = validate_params(slug, dict(params or {}))
    module = cst.parse_module(builtin_source(slug))
    rewriter = _ParamsRewriter(values)
    module = module.visit(rewriter)
    if rewriter.rewritten != 1:
        raise ValueError(f"{slug}: expected exactly one class-level PARAMS dict literal, found {rewriter.rewritten}")
    missing = sorted(set(values) - rewriter.seen)
    if missing:
        raise ValueError(f"{slug}: PARAMS literal lacks key(s) {', '.join(missing)}")
    return module.code


__all__ = [
    "BUILTIN_FAMILIES",
    "DIAGNOSES",
    "builtin_params",
    "builtin_source",
    "params_of_source",
    "render",
    "validate_params",
]
