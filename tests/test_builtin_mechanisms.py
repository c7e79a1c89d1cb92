"""Built-in mechanism families: they pass the gates an LLM-written mechanism must pass, render() turns a
specification into source, and each one does what its summary claims."""
from __future__ import annotations

import ast
import copy
import math
import random

import pytest

from recur.core.mechanism_api import HOOKS, overridden_hooks
from recur.mechanism_store.builtin import (
    BUILTIN_FAMILIES,
    DIAGNOSES,
    builtin_params,
    builtin_source,
    params_of_source,
    render,
    validate_params,
)
from recur.mechanism_store.properties import check_properties, failures, in_process_caller, load_mechanism

SLUGS = sorted(BUILTIN_FAMILIES)
ALLOWED_IMPORTS = {
    "math", "random", "statistics", "collections", "itertools", "heapq", "bisect", "functools", "dataclasses",
    "typing", "enum", "json", "recur.core.mechanism_api",
}

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "depth": {"type": "int", "low": 2, "high": 12, "log": False},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False},
    "act": {"type": "choice", "choices": ["relu", "gelu", "silu"]},
}


def mech(slug: str, **params):
    """An instance of built-in ``slug`` rendered with ``params`` (so the render path is what is exercised)."""
    return load_mechanism(render(slug, params), slug)()


def rec(i, params, *, kept=False, status="ok", metric=1.0, kind=None):
    return {
        "id": f"L1-{i:04d}", "level": 1, "parent": None, "kind": kind if kind is not None else ",".join(sorted(params)),
        "payload": {"params": dict(params)}, "metric": metric if status == "ok" else None,
        "cost": {"trials": 1, "seconds": 1.0}, "status": status, "seed": i, "kept": kept,
    }


def prop(params, kind=None):
    return {"kind": kind if kind is not None else ",".join(sorted(params)), "payload": {"params": dict(params)}, "rationale": "t"}


def context(**over):
    base = {
        "level": 1, "step": 10, "space": copy.deepcopy(SPACE), "frozen": [], "guidance": [],
        "incumbent": {"lr": 0.01, "depth": 6, "dropout": 0.1, "act": "gelu"}, "best_metric": 1.0,
        "maximize": False, "proposals": [prop({"lr": 0.02})], "history": [],
    }
    base.update(over)
    return base


def unit(value, spec):
    if spec.get("log"):
        return (math.log(value) - math.log(spec["low"])) / (math.log(spec["high"]) - math.log(spec["low"]))
    return (value - spec["low"]) / (spec["high"] - spec["low"])


# ------------------------------------------------------------------------------------------- the gates


@pytest.mark.parametrize("slug", SLUGS)
def test_builtin_passes_the_static_policy(slug):
    from recur.mechanism_store.policy import check_source, format_violations

    violations = check_source(builtin_source(slug))
    assert not violations, format_violations(violations, slug)


@pytest.mark.parametrize("slug", SLUGS)
def test_builtin_is_written_like_a_generated_mechanism(slug):
    """The brief's rules, checked independently of policy.py (imports, module body, no dunders, PARAMS)."""
    tree = ast.parse(builtin_source(slug))
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Expr, ast.Assign)), node
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant)
        if isinstance(node, ast.Assign):
            ast.literal_eval(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS
        if isinstance(node, ast.ImportFrom):
            assert node.module in ALLOWED_IMPORTS
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("__")
        if isinstance(node, ast.Name):
            assert node.id not in {"getattr", "setattr", "eval", "exec", "open", "compile", "globals", "vars"}
        assert not isinstance(node, (ast.Global, ast.Nonlocal, ast.Yield, ast.YieldFrom, ast.GeneratorExp, ast.Lambda))
        if isinstance(node, ast.FunctionDef):
            assert not node.decorator_list
            for default in node.args.defaults:
                ast.literal_eval(default)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert len(classes) == 1 and ast.get_docstring(classes[0])
    assert ast.get_docstring(tree)
    cls = load_mechanism(builtin_source(slug), slug)
    assert sorted(overridden_hooks(cls)) == sorted(BUILTIN_FAMILIES[slug]["hooks"])


@pytest.mark.parametrize("slug", SLUGS)
def test_builtin_passes_every_property(slug):
    hooks = BUILTIN_FAMILIES[slug]["hooks"]
    results = check_properties(in_process_caller(builtin_source(slug)), hooks, max_examples=20, seed=1)
    assert failures(results) == [], [r.to_dict() for r in failures(results)]


def test_rendered_extremes_pass_every_property():
    """Each family at its range limits (low, then high) still satisfies the contract."""
    for slug in SLUGS:
        specs = BUILTIN_FAMILIES[slug]["params"]
        for end in ("low", "high"):
            source = render(slug, {name: spec[end] for name, spec in specs.items()})
            results = check_properties(in_process_caller(source), BUILTIN_FAMILIES[slug]["hooks"], max_examples=6, seed=2)
            assert failures(results) == [], (slug, end, [r.to_dict() for r in failures(results)])


# ------------------------------------------------------------------------------------------- family table


def test_family_table_matches_the_modules():
    for slug, family in BUILTIN_FAMILIES.items():
        assert set(family) >= {"hooks", "params", "summary", "answers"}
        assert family["hooks"] and set(family["hooks"]) <= set(HOOKS)
        assert family["answers"] and set(family["answers"]) <= set(DIAGNOSES)
        assert family["summary"].strip()
        assert builtin_params(slug) == {name: spec["default"] for name, spec in family["params"].items()}
        for name, spec in family["params"].items():
            assert spec["type"] in ("int", "float"), (slug, name)
            assert spec["low"] <= spec["default"] <= spec["high"], (slug, name)
            assert isinstance(spec["default"], int if spec["type"] == "int" else float), (slug, name)
    assert set().union(*(f["answers"] for f in BUILTIN_FAMILIES.values())) == set(DIAGNOSES)


def test_render_with_custom_params_rewrites_params_only():
    source = render("tabu", {"tenure": 7, "min_relative": 0.2, "aspiration": 0})
    params = params_of_source(source)
    assert params["tenure"] == 7 and params["min_relative"] == 0.2 and params["aspiration"] == 0
    assert params["linear_buckets"] == BUILTIN_FAMILIES["tabu"]["params"]["linear_buckets"]["default"]
    original = builtin_source("tabu")
    assert len(source.splitlines()) == len(original.splitlines())
    changed = [a for a, b in zip(original.splitlines(), source.splitlines()) if a != b]
    assert len(changed) == 3 and all(line.strip().startswith('"') for line in changed)
    assert load_mechanism(source, "tabu")().PARAMS["tenure"] == 7
    assert render("tabu", {}) == original
    # floats given as ints and ints given as integral floats are normalised to the declared type
    assert params_of_source(render("annealing", {"t0": 1, "window": 20.0}))["t0"] == 1.0
    assert params_of_source(render("annealing", {"window": 20.0}))["window"] == 20


@pytest.mark.parametrize(
    "slug, params, match",
    [
        ("tabu", {"tenure": 0}, "outside"),
        ("tabu", {"tenure": 501}, "outside"),
        ("annealing", {"decay": 1.5}, "outside"),
        ("latin_hypercube", {"radius": -0.1}, "outside"),
        ("tabu", {"tenure": 2.5}, "int"),
        ("tabu", {"tenure": True}, "number"),
        ("tabu", {"tenure": "20"}, "number"),
        ("annealing", {"t0": float("nan")}, "finite"),
        ("tabu", {"colour": 1}, "unknown"),
    ],
)
def test_render_rejects_bad_params(slug, params, match):
    with pytest.raises(ValueError, match=match):
        render(slug, params)


def test_render_rejects_unknown_family():
    with pytest.raises(KeyError):
        render("../../etc/passwd", {})
    with pytest.raises(KeyError):
        builtin_source("nope")
    with pytest.raises(KeyError):
        validate_params("nope", {})


# ------------------------------------------------------------------------------------------- behaviour


def test_tabu_drops_recently_tried_points_and_batch_duplicates():
    tabu = mech("tabu", tenure=3)
    history = [
        rec(0, {"lr": 0.001, "depth": 4}),
        rec(1, {"dropout": 0.3}),
        rec(2, {"lr": 0.05}),
        rec(3, {"act": "relu"}, status="crash"),
    ]
    repeat = prop({"lr": 0.0502})  # same log bucket as lr=0.05
    crashed = prop({"act": "relu"})  # failed trials are tabu too
    new = prop({"lr": 0.0005})
    twin = prop({"lr": 0.0005})
    old = prop({"lr": 0.001, "depth": 4})  # tried 4 records ago: outside tenure 3
    out = tabu.filter([repeat, crashed, new, twin, old], history)
    assert out == [new, old]
    assert tabu.filter([], history) == []


def test_tabu_buckets_linear_and_exact_values():
    tabu = mech("tabu", tenure=10)
    history = [rec(0, {"dropout": 0.30}), rec(1, {"dropout": 0.10}), rec(2, {"act": "gelu"})]
    near = prop({"dropout": 0.301})
    far = prop({"dropout": 0.2})
    other_choice = prop({"act": "silu"})
    same_choice = prop({"act": "gelu"})
    other_kind = prop({"dropout": 0.30}, kind="dropout-sweep")
    assert tabu.filter([near, far, other_choice, same_choice, other_kind], history) == [far, other_choice, other_kind]


def test_tabu_aspiration_when_everything_is_tabu():
    history = [rec(0, {"lr": 0.01}), rec(1, {"lr": 0.02})]
    proposals = [prop({"lr": 0.02}), prop({"lr": 0.01})]
    assert mech("tabu").filter(proposals, history) == [proposals[1]]  # the least recently tried one
    assert mech("tabu", aspiration=0).filter(proposals, history) == []  # the runner then keeps them all


def test_ucb_bandit_prefers_the_rewarding_kind():
    bandit = mech("ucb_bandit", split_kinds=0)
    history = []
    for i in range(40):
        history.append(rec(2 * i, {"lr": 0.01}, kept=i % 2 == 0))
        history.append(rec(2 * i + 1, {"depth": 4}, kept=False))
    proposals = [prop({"depth": 6}), prop({"lr": 0.02})]
    picks = [bandit.select(proposals, history, random.Random(s))["kind"] for s in range(30)]
    assert picks == ["lr"] * 30


def test_ucb_bandit_tries_unseen_kinds_first_and_breaks_ties_with_rng():
    bandit = mech("ucb_bandit")
    history = [rec(i, {"lr": 0.01}, kept=True) for i in range(10)]
    proposals = [prop({"lr": 0.02}), prop({"act": "relu"})]
    assert bandit.select(proposals, history, random.Random(0))["kind"] == "act"
    tied = [prop({"depth": 3}), prop({"dropout": 0.2})]
    kinds = {bandit.select(tied, history, random.Random(s))["kind"] for s in range(20)}
    assert kinds == {"depth", "dropout"}


def test_ucb_bandit_penalises_crashing_kinds_and_splits_combinations():
    bandit = mech("ucb_bandit", exploration=0.1)
    history = [rec(i, {"depth": 12}, status="crash") for i in range(10)] + [rec(10 + i, {"lr": 0.01}) for i in range(10)]
    assert bandit.select([prop({"depth": 3}), prop({"lr": 0.02})], history, random.Random(0))["kind"] == "lr"
    history += [rec(30 + i, {"dropout": 0.1}, kept=True) for i in range(10)]
    combo = prop({"dropout": 0.2, "lr": 0.02})
    assert bandit.select([prop({"depth": 3}), combo], history, random.Random(0)) is combo


def test_latin_hypercube_covers_strata_and_respects_bounds():
    lhs = mech("latin_hypercube", n=6, dims=0, radius=0.5, lead_every=0)
    ctx = context(frozen=["dropout"])
    before = copy.deepcopy(ctx)
    out = lhs.propose(ctx, random.Random(3))
    assert ctx == before
    assert out[:1] == ctx["proposals"]
    added = out[1:]
    assert len(added) == 6
    for p in added:
        params = p["payload"]["params"]
        assert p["kind"] == "act,depth,lr" and set(params) == {"act", "depth", "lr"}
        assert 1e-4 <= params["lr"] <= 1e-1 and isinstance(params["lr"], float)
        assert 2 <= params["depth"] <= 12 and isinstance(params["depth"], int)
        assert params["act"] in SPACE["act"]["choices"]
    # radius 0.5 spans the whole (log) range: each of the 6 strata holds exactly one lr
    strata = sorted(min(int(unit(p["payload"]["params"]["lr"], SPACE["lr"]) * 6), 5) for p in added)
    assert strata == list(range(6))
    acts = [p["payload"]["params"]["act"] for p in added]
    assert sorted(acts) == sorted(["relu", "gelu", "silu"] * 2)


def test_latin_hypercube_stays_near_the_incumbent_and_is_seeded():
    lhs = mech("latin_hypercube", n=5, dims=1, radius=0.1, replace=1)
    ctx = context(frozen=["act", "depth", "dropout"])
    out = lhs.propose(ctx, random.Random(0))
    assert len(out) == 5 and all(p["kind"] == "lr" for p in out)
    centre = unit(0.01, SPACE["lr"])
    assert all(abs(unit(p["payload"]["params"]["lr"], SPACE["lr"]) - centre) <= 0.1 + 1e-6 for p in out)
    assert out == lhs.propose(ctx, random.Random(0))
    assert out != lhs.propose(ctx, random.Random(1))


def test_latin_hypercube_consecutive_trials_cover_the_design():
    """Each call is independent, yet n consecutive leading turns try the n points of one design."""
    lhs = mech("latin_hypercube", n=4, dims=2, radius=0.5, lead_every=2)
    tried = []
    history = [rec(100, {"lr": 0.01})]
    for step in range(1, 9):
        out = lhs.propose(context(history=list(history)), random.Random(step))
        if len(history) % 2 == 0:
            assert out[0]["rationale"].startswith("Latin hypercube") and out[-1] == context()["proposals"][0]
            tried.append(out[0])
        else:
            assert out[0] == context()["proposals"][0]  # not its turn: the policy's own proposal leads
        history.append(rec(100 + step, out[0]["payload"]["params"]))
    assert len(tried) == 4
    assert len({p["kind"] for p in tried}) == 1  # one design: the same parameters throughout the block
    for name in tried[0]["payload"]["params"]:
        spec = SPACE[name]
        if spec["type"] == "float":
            strata = sorted(min(int(unit(p["payload"]["params"][name], spec) * 4), 3) for p in tried)
            assert strata == [0, 1, 2, 3], (name, strata)


def _worse(step, maximize=False, status="ok", default_keep=False, metric=1.01):
    return {"metric": metric if maximize is False else 2 - metric, "status": status, "best_metric": 1.0,
            "incumbent_metric": 1.0, "default_keep": default_keep, "maximize": maximize, "step": step,
            "threshold": 0.01}


def test_annealing_keeps_some_worse_results_early_and_none_late():
    annealing = mech("annealing")
    early = [annealing.accept(_worse(0), [], random.Random(s)) for s in range(200)]
    assert 0 < sum(early) < 200
    early_max = [annealing.accept(_worse(0, maximize=True), [], random.Random(s)) for s in range(200)]
    assert 0 < sum(early_max) < 200
    late = [annealing.accept(_worse(200), [], random.Random(s)) for s in range(200)]
    assert sum(late) == 0
    much_worse = _worse(0, metric=1.5)
    assert not any(annealing.accept(much_worse, [], random.Random(s)) for s in range(50))


def test_annealing_never_keeps_failures_and_follows_the_gate_on_improvements():
    annealing = mech("annealing")
    for status in ("crash", "timeout", "nan", "oom"):
        assert annealing.accept(_worse(0, status=status, default_keep=True), [], random.Random(0)) is False
    for metric in (float("nan"), float("inf"), None):
        assert annealing.accept(_worse(0, metric=metric) | {"metric": metric}, [], random.Random(0)) is False
    assert annealing.accept(_worse(500, default_keep=True, metric=0.9), [], random.Random(0)) is True


def test_restart_fires_after_patience_with_a_far_point():
    restart = mech("restart", patience=5, cooldown=3, n=1, min_distance=0.3)
    kept = [rec(0, {"lr": 0.01}, kept=True)]
    flops = [rec(i, {"lr": 0.01 + i * 1e-4}) for i in range(1, 10)]
    ctx = lambda k: context(history=kept + flops[:k], frozen=["dropout"])  # noqa: E731
    assert restart.propose(ctx(4), random.Random(0)) == ctx(4)["proposals"]
    out = restart.propose(ctx(5), random.Random(0))
    assert len(out) == 1 and out != ctx(5)["proposals"]
    params = out[0]["payload"]["params"]
    assert set(params) == {"act", "depth", "lr"} and out[0]["kind"] == "act,depth,lr"
    assert "restart" in out[0]["rationale"]
    incumbent = ctx(5)["incumbent"]
    assert abs(unit(params["lr"], SPACE["lr"]) - unit(incumbent["lr"], SPACE["lr"])) >= 0.3 - 1e-6
    assert abs(unit(params["depth"], SPACE["depth"]) - unit(incumbent["depth"], SPACE["depth"])) >= 0.25
    assert params["act"] != incumbent["act"]
    assert restart.propose(ctx(6), random.Random(0)) == ctx(6)["proposals"]  # cooldown
    assert restart.propose(ctx(8), random.Random(0)) != ctx(8)["proposals"]  # fires again 3 later


def test_restart_keeps_the_restart_trial_to_move_the_search():
    restart = mech("restart", patience=5, cooldown=3)
    kept = [rec(0, {"lr": 0.01}, kept=True)]
    flops = [rec(i, {"lr": 0.01 + i * 1e-4}) for i in range(1, 10)]
    worse = {"metric": 1.5, "status": "ok", "best_metric": 1.0, "incumbent_metric": 1.0, "default_keep": False,
             "maximize": False, "step": 6}
    assert restart.accept(worse, kept + flops[:5], random.Random(0)) is True  # the restart trial: kept
    assert restart.accept(worse, kept + flops[:4], random.Random(0)) is False  # an ordinary one: gate decides
    assert restart.accept(worse | {"status": "crash", "metric": None}, kept + flops[:5], random.Random(0)) is False
    assert restart.accept(worse | {"default_keep": True}, kept, random.Random(0)) is True
    assert mech("restart", patience=5, keep_restart=0).accept(worse, kept + flops[:5], random.Random(0)) is False


def test_restart_goes_where_nothing_was_tried():
    restart = mech("restart", patience=2, pool=64, dims=0, min_distance=0.05)
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False}}
    history = [rec(i, {"x": 0.02 * i}) for i in range(30)]  # everything tried in [0, 0.58]
    ctx = context(space=space, incumbent={"x": 0.3}, history=history, proposals=[prop({"x": 0.31})])
    out = restart.propose(ctx, random.Random(0))
    assert out[0]["payload"]["params"]["x"] > 0.7


def test_elite_crossover_children_mix_parents():
    elite = mech("elite_crossover", elites=2, diverse=0, children=8, mutation_rate=0.0, lead_every=0)
    incumbent = {"lr": 0.01, "depth": 6, "dropout": 0.2, "act": "gelu"}
    a = {"lr": 0.001, "depth": 4, "dropout": 0.1}
    b = {"lr": 0.05, "depth": 10, "dropout": 0.4}
    history = [rec(0, a, metric=0.9), rec(1, b, metric=0.95)] + [
        rec(2 + i, {"lr": 0.09, "depth": 2, "dropout": 0.0}, metric=2.0 + i) for i in range(5)
    ]
    ctx = context(history=history, incumbent=incumbent, proposals=[prop({"lr": 0.02})])
    out = elite.propose(ctx, random.Random(0))
    assert out[0] == ctx["proposals"][0]
    children = [p["payload"]["params"] for p in out[1:]]
    assert len(children) == 8
    mixed = 0
    for child in children:
        assert child and "act" not in child  # act is the same in both parents and the incumbent
        from_a = [n for n in child if child[n] == a[n]]
        from_b = [n for n in child if child[n] == b[n]]
        # every gene comes from a parent, except the one mutation forced on a child that equals a parent
        assert len(from_a) + len(from_b) >= len(child) - 1
        mixed += bool(from_a) and bool(from_b)
        full = {**incumbent, **child}
        assert full != {**incumbent, **a} and full != {**incumbent, **b}
    assert mixed >= 3
    assert all("crossover" in p["rationale"] and p["kind"] == ",".join(sorted(p["payload"]["params"])) for p in out[1:])


def test_elite_crossover_rebuilds_points_from_kept_edits():
    """Partial edits are completed with the kept edits before them (and the incumbent), so crossing two
    near-misses combines them on top of the kept improvement instead of undoing it."""
    elite = mech("elite_crossover", elites=2, diverse=0, children=6, mutation_rate=0.0)
    history = [
        rec(0, {"depth": 8}, kept=True, metric=0.9),  # kept: later points have depth 8
        rec(1, {"lr": 0.002}, metric=0.8),
        rec(2, {"dropout": 0.3}, metric=0.85),
    ]
    ctx = context(history=history, incumbent={"lr": 0.01, "depth": 8, "dropout": 0.1, "act": "gelu"})
    children = [p["payload"]["params"] for p in elite.propose(ctx, random.Random(3))[:6]]
    assert sum("depth" in c for c in children) <= 1  # at most a forced mutation touches depth
    assert any(c.get("lr") == 0.002 and c.get("dropout") == 0.3 for c in children)  # the two near-misses combined


def test_elite_crossover_archive_and_frozen():
    elite = mech("elite_crossover", elites=1, diverse=1, pool_fraction=1.0, children=6, mutation_rate=0.0)
    best = {"lr": 0.001, "depth": 4}
    near = {"lr": 0.0011, "depth": 4}
    far = {"lr": 0.09, "depth": 12}
    history = [rec(0, best, metric=0.5), rec(1, near, metric=0.6), rec(2, far, metric=0.7), rec(3, {"lr": 0.02}, status="crash")]
    out = elite.propose(context(history=history, frozen=["dropout"], maximize=False), random.Random(1))
    children = [p["payload"]["params"] for p in out[:6]]
    # the diverse slot goes to the far point, not the near-duplicate of the best
    assert any(c.get("depth") == 12 or c.get("lr") == 0.09 for c in children)
    assert not any(c.get("lr") == 0.0011 for c in children)
    assert all("dropout" not in c for c in children)
    assert elite.propose(context(history=history[:1]), random.Random(0)) == context()["proposals"]  # needs 2 elites


def test_freeze_guidance_freezes_a_parameter_that_never_helped():
    freeze = mech("freeze_guidance", window=10, min_tries=3)
    history = []
    for i in range(5):
        history.append(rec(2 * i, {"lr": 0.01 + i * 1e-3}, kept=False))
        history.append(rec(2 * i + 1, {"depth": 3 + i}, kept=i % 2 == 0))
    ctx = context(history=history, guidance=["keep it small"], task="gpt", source="x = 1")
    before = copy.deepcopy(ctx)
    out = freeze.guide(ctx)
    assert ctx == before
    assert out["frozen"] == ["lr"]
    assert out["guidance"][0] == "keep it small" and len(out["guidance"]) == 2
    assert "lr" in out["guidance"][1] and "depth" in out["guidance"][1]
    assert {k: v for k, v in out.items() if k not in ("frozen", "guidance")} == {
        k: v for k, v in before.items() if k not in ("frozen", "guidance")
    }


def test_freeze_guidance_keeps_parameters_free_and_unfreezes_rested_ones():
    freeze = mech("freeze_guidance", window=6, min_tries=2, rest=4, min_free=1)
    space = {"a": SPACE["lr"], "b": SPACE["depth"]}
    flops = [rec(i, {"a": 0.01} if i % 2 else {"b": 3}) for i in range(6)]
    out = freeze.guide(context(space=space, history=flops, incumbent={}))
    assert len(out["frozen"]) == 1  # both never helped, but one must stay free
    # "a" frozen earlier and not edited for 5 records (>= rest): it is unfrozen again
    history = [rec(0, {"a": 0.01})] + [rec(i, {"b": 3 + i}, kept=True) for i in range(1, 6)]
    out = freeze.guide(context(space=space, history=history, frozen=["a"], incumbent={}))
    assert out["frozen"] == [] and "Unfrozen a" in out["guidance"][-1]
    # a user-pinned parameter (never edited in the history) stays frozen
    out = freeze.guide(context(space=space, history=history[1:], frozen=["a"], incumbent={}))
    assert out["frozen"] == ["a"]


def test_freeze_guidance_never_freezes_the_whole_space():
    """Regression: with a, b already frozen and c also fruitless, the old module returned [a, b, c] (every
    parameter), which the hook runner refuses; an all-frozen incoming context must also come back with one free."""
    freeze = mech("freeze_guidance")
    space = {"a": SPACE["lr"], "b": SPACE["depth"], "c": SPACE["dropout"]}
    history = [rec(3 * r + j, {name: 0.01 + r * 1e-3}) for r in range(3) for j, name in enumerate("abc")]
    out = freeze.guide(context(space=space, history=history, frozen=["a", "b"], incumbent={}))
    assert set(out["frozen"]) < set(space) and len(set(out["frozen"])) == len(out["frozen"])
    one = {"a": SPACE["lr"]}
    out = freeze.guide(context(space=one, history=[], frozen=["a"], incumbent={}))
    assert out["frozen"] == []
