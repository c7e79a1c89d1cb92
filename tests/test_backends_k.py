"""Every proposal backend offers K proposals per step: the scripted outer baseline, level 1 and the outer
levels over litellm's real HTTP path (a loopback OpenAI-compatible server), and level 1 on the embedded
offline model (one model call for K proposals)."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from llm_server import ScriptedLLMServer, reply_text  # noqa: E402

from recur.core.hooks import validate_proposal  # noqa: E402
from recur.core.llm import LLMClient, LLMConfig  # noqa: E402
from recur.levels.backends import (  # noqa: E402
    ScriptedMechanismBackend,
    evaluated,
    fallback_backend,
    offline_max_tokens,
    spec_key,
)
from recur.levels.llm_backends import (  # noqa: E402
    Level1LLMBackend,
    OuterLLMBackend,
    family_groups,
    level1_schema,
    name_groups,
    specs_schema,
)
from recur.mechanism_store.builtin import BUILTIN_FAMILIES, builtin_source  # noqa: E402
from recur.tasks.synthetic.surface import SPACE  # noqa: E402

K = 3
FAMILIES = {f: {"summary": s["summary"], "hooks": s["hooks"], "answers": s["answers"]}
            for f, s in BUILTIN_FAMILIES.items()}
FAMILY_SPACE = {"family": {"type": "choice", "choices": sorted(BUILTIN_FAMILIES)},
                **{f"{f}.{n}": {k: v for k, v in p.items() if k != "default"}
                   for f, s in sorted(BUILTIN_FAMILIES.items()) for n, p in s["params"].items()}}
DEFAULTS = {f"{f}.{n}": p["default"] for f, s in BUILTIN_FAMILIES.items() for n, p in s["params"].items()}


def outer_context(history: list[dict], tags=("stagnation",)) -> dict:
    return {"level": 2, "step": len(history), "space": FAMILY_SPACE, "frozen": [], "guidance": [],
            "incumbent": {**DEFAULTS, "family": "tabu"}, "best_metric": None, "maximize": True,
            "history": history, "diagnosis": {"level": 1, "trials": 12, "tags": list(tags)}, "families": FAMILIES,
            "active": []}


def record(i: int, proposal: dict, metric: float | None) -> dict:
    return {"id": f"t{i}", "level": 2, "parent": None, "kind": proposal["kind"],
            "payload": {"params": proposal["payload"]["params"], "family": proposal["kind"]},
            "metric": metric, "status": "ok" if metric is not None else "inactive", "kept": False}


def level1_context(history: list[dict] | None = None, frozen=()) -> dict:
    return {"level": 1, "step": 0, "space": SPACE, "frozen": list(frozen), "guidance": [],
            "incumbent": {"LEARNING_RATE": 0.001, "BATCH_SIZE": 32, "DEPTH": 4, "WIDTH": 256, "DROPOUT": 0.1,
                          "WARMUP_FRAC": 0.05, "WEIGHT_DECAY": 0.01, "BETA2": 0.95, "ACTIVATION": "gelu",
                          "SCHEDULE": "cosine"},
            "best_metric": 1.234, "maximize": False, "history": history or [], "task": "Synthetic task.",
            "metric_name": "val_bpb"}


# ------------------------------------------------------------------------------------ (a) scripted outer
@pytest.mark.parametrize("seed", [0, 1, 2, 7, 123])
def test_scripted_outer_offers_k_distinct_unevaluated_specs_untried_first(seed):
    rng = random.Random(seed)
    backend = ScriptedMechanismBackend(proposals=K)
    tags = rng.choice([("stagnation",), ("repeats", "crashes"), ("narrow-exploration",), ("exploitation",)])
    history: list[dict] = []
    all_tried_at = None
    for step in range(60):  # until every family was tried, then on: the later steps must perturb tried ones
        ctx = outer_context(history, tags)
        tried, done = evaluated(history, FAMILIES)
        untried = [f for f in FAMILIES if f not in tried]
        out = backend.generate(ctx, seed * 100 + step, f"t{step}")
        assert len(out) == K
        keys = [spec_key(p["kind"], p["payload"]["params"]) for p in out]
        assert len(set(keys)) == K, "the K specs must differ"
        assert not set(keys) & done, "an evaluated (family, params) was proposed again"
        for p in out:
            validate_proposal(p, FAMILY_SPACE)
            assert p["payload"]["params"]["family"] == p["kind"] and p["rationale"].startswith("scripted: ")
        fams = [p["kind"] for p in out]
        n_new = min(K, len(untried))
        assert set(fams[:n_new]) <= set(untried), (fams, untried)  # untried families come first ...
        assert len(set(fams[:n_new])) == n_new  # ... each once
        fitting = [f for f in untried if set(tags) & set(FAMILIES[f]["answers"])]
        lead = min(len(fitting), n_new)
        assert set(fams[:lead]) <= set(fitting)  # and those answering the diagnosis lead
        if not untried:
            assert all("new parameters" in p["rationale"] for p in out)
        if not untried:
            all_tried_at = step if all_tried_at is None else all_tried_at
            if step >= all_tried_at + 6:
                break
        pick = out[rng.randrange(K)]  # a select hook may pick any of them
        history.append(record(step, pick, rng.choice([None, rng.random()])))
    assert all_tried_at is not None and step == all_tried_at + 6


def test_scripted_outer_never_repeats_even_when_one_family_has_been_tried_often():
    backend = ScriptedMechanismBackend(proposals=K)
    history = []
    for i, fam in enumerate(FAMILIES):
        history.append(record(i, {"kind": fam, "payload": {"params": {**DEFAULTS, "family": fam}}}, 0.1 * i))
    for step in range(10):
        out = backend.generate(outer_context(history), step, f"s{step}")
        _, done = evaluated(history, FAMILIES)
        assert len(out) == K and not {spec_key(p["kind"], p["payload"]["params"]) for p in out} & done
        assert "best tried family" in out[0]["rationale"]  # every family tried: perturb a ranked one
        history += [record(100 + 3 * step + j, p, 0.01) for j, p in enumerate(out)]


def test_scripted_outer_ranks_families_by_their_mean_not_one_lucky_score():
    """Family a scored 0.8 on each of four tries; b scored 0 four times and 2.0 once (mean 0.4). Ranking by the
    best single score would perturb b forever; the seeded Thompson draw puts a first on about 82% of seeds
    (measured over 1600) and b first on the rest (its one high score keeps it in play)."""
    from recur.levels.backends import rank_families

    tried = ([{"kind": "a", "metric": 0.8, "n": i} for i in range(4)]
             + [{"kind": "b", "metric": 0.0, "n": i} for i in range(4)] + [{"kind": "b", "metric": 2.0, "n": 9}])
    firsts = [rank_families(tried, random.Random(seed))[0] for seed in range(400)]
    share_a = sum(f["kind"] == "a" for f in firsts) / len(firsts)
    assert 0.7 < share_a < 0.95, share_a
    assert all(f["metric"] == (0.8 if f["kind"] == "a" else 2.0) for f in firsts)  # each family's best try
    clear = tried + [{"kind": "c", "metric": 5.0, "n": i} for i in range(5)]  # far ahead, often tried
    assert all(rank_families(clear, random.Random(seed))[0]["kind"] == "c" for seed in range(100))
    assert rank_families([{"kind": "d", "metric": None}], random.Random(0))[0]["kind"] == "d"  # unscored: last, kept


def test_fallback_backends_offer_k():
    assert len(fallback_backend(1, proposals=4).generate(level1_context(), 0, "x")) == 4
    assert len(fallback_backend(2, proposals=2).generate(outer_context([]), 0, "x")) == 2


# ------------------------------------------------------------------------------------ (b) level 1, HTTP
def change(name, value):
    return {"name": name, "value": value}


def make_client(srv: ScriptedLLMServer, calls: list, **kw) -> LLMClient:
    cfg = dict(model="openai/x", api_base=srv.api_base, api_key="x", timeout_s=10, max_retries=1, max_reasks=2,
               retry_wait_s=0.01, retry_wait_max_s=0.05)
    cfg.update(kw)
    return LLMClient(LLMConfig(**cfg), on_call=calls.append)


def test_level1_http_gives_k_proposals_from_one_call():
    answer = {"proposals": [
        {"changes": [change("DEPTH", 6)], "reason": "deeper"},
        {"changes": [change("LEARNING_RATE", 0.003), change("WARMUP_FRAC", 0.1)], "reason": "faster, warmer"},
        {"changes": [change("ACTIVATION", "silu")], "reason": "smoother"},
    ]}
    calls: list = []
    with ScriptedLLMServer() as srv:
        srv.push(reply_text(json.dumps(answer)))
        out = Level1LLMBackend(make_client(srv, calls), proposals=K).generate(level1_context(), 5, "t1")
        body = srv.bodies[0]
    assert [p["payload"]["params"] for p in out] == [{"DEPTH": 6}, {"LEARNING_RATE": 0.003, "WARMUP_FRAC": 0.1},
                                                     {"ACTIVATION": "silu"}]
    assert [p["kind"] for p in out] == ["DEPTH", "LEARNING_RATE,WARMUP_FRAC", "ACTIVATION"]
    assert [p["rationale"] for p in out] == ["deeper", "faster, warmer", "smoother"]
    for p in out:
        validate_proposal(p, SPACE)
    assert [c["outcome"] for c in calls] == ["ok"]
    schema = body["response_format"]["json_schema"]["schema"]
    arr = schema["properties"]["proposals"]
    assert arr["minItems"] == arr["maxItems"] == K and schema["required"] == ["proposals"]
    assert "diff" in arr["items"]["properties"]  # capable models may still answer any item with a diff
    assert "3 different edits" in body["messages"][-1]["content"]


def test_level1_http_out_of_range_item_is_reasked_and_duplicates_dropped():
    bad = {"proposals": [
        {"changes": [change("DEPTH", 6)], "reason": "deeper"},
        {"changes": [change("DROPOUT", 0.9)], "reason": "regularise"},  # outside [0, 0.5]
        {"changes": [change("BETA2", 0.99)], "reason": "smoother"},
    ]}
    good = {"proposals": [
        {"changes": [change("DEPTH", 6)], "reason": "deeper"},
        {"changes": [change("DROPOUT", 0.3)], "reason": "regularise"},
        {"changes": [change("DEPTH", 6)], "reason": "deeper again"},  # a repeat of item 1: dropped
    ]}
    calls: list = []
    with ScriptedLLMServer() as srv:
        srv.push(reply_text(json.dumps(bad)), reply_text(json.dumps(good)))
        out = Level1LLMBackend(make_client(srv, calls), proposals=K).generate(level1_context(), 5, "t1")
        reask = srv.bodies[1]["messages"][-1]["content"]
    assert [c["outcome"].split(":")[0] for c in calls] == ["parse-error", "ok"]
    assert "proposal 2" in calls[0]["outcome"] and "DROPOUT" in calls[0]["outcome"] and "outside" in reask
    assert [p["payload"]["params"] for p in out] == [{"DEPTH": 6}, {"DROPOUT": 0.3}]


def test_level1_http_frozen_and_unknown_names_are_reasked():
    calls: list = []
    frozen_answer = {"proposals": [{"changes": [change("DEPTH", 6)], "reason": "r"}] * 2
                     + [{"changes": [change("WIDTH", 128)], "reason": "r"}]}
    unknown = {"proposals": [{"changes": [change("MOMENTUM", 0.9)], "reason": "r"}]}
    ok = {"changes": [change("WIDTH", 128)], "reason": "one-proposal format is still understood"}
    with ScriptedLLMServer() as srv:
        srv.push(*(reply_text(json.dumps(a)) for a in (frozen_answer, unknown, ok)))
        out = Level1LLMBackend(make_client(srv, calls), proposals=K).generate(level1_context(frozen=["DEPTH"]), 1, "t")
    assert [c["outcome"].split(":")[0] for c in calls] == ["parse-error", "parse-error", "ok"]
    assert "'DEPTH' is not an editable" in calls[0]["outcome"] and "'MOMENTUM'" in calls[1]["outcome"]
    assert [p["payload"]["params"] for p in out] == [{"WIDTH": 128}]


# ------------------------------------------------------------------------------------ (c) outer, HTTP
def spec(family, diagnosis="stagnation", **params):
    return {"family": family, "params": params, "diagnosis": diagnosis}


def outer_step(specs: list[dict]):
    """Answers explore/critique with text, specify with ``specs`` (in turn), generate with the family template."""
    replies = iter(specs)

    def step(body):
        text = body["messages"][-1]["content"]
        if "Write the mechanism as one Python module" in text:
            fam = json.loads(text.split("Specification: ", 1)[1].split("\n", 1)[0])["family"]
            return reply_text(f"```python\n{builtin_source(fam)}```")(body)
        if "response_format" in body or "could not be used" in text:
            return reply_text(json.dumps(next(replies)))(body)
        return reply_text("The search repeats the same regions; it stagnates.")(body)
    return step


def test_outer_http_specify_gives_k_specs_and_drops_an_evaluated_repeat():
    tabu = {f"tabu.{n}": p["default"] for n, p in BUILTIN_FAMILIES["tabu"]["params"].items()}
    history = [record(0, {"kind": "tabu", "payload": {"params": {**tabu, "tabu.tenure": 8, "family": "tabu"}}}, 0.01)]
    reply = {"specs": [spec("tabu", tenure=8),  # exactly the evaluated one: dropped
                       spec("restart", patience=5), spec("annealing", t0=2.0)]}
    calls: list = []
    with ScriptedLLMServer(default=outer_step([reply])) as srv:
        out = OuterLLMBackend(make_client(srv, calls), 2, proposals=K).generate(outer_context(history), 3, "o1")
        bodies = srv.bodies
    specify = [b for b in bodies if "response_format" in b]
    assert len(specify) == 1  # one call for all K specs
    schema = specify[0]["response_format"]["json_schema"]["schema"]
    arr = schema["properties"]["specs"]
    assert arr["minItems"] == arr["maxItems"] == K
    allowed = {v["properties"]["family"]["const"] for v in arr["items"]["anyOf"]}
    assert allowed == set(FAMILIES) - {"tabu"}  # the grammar offers untried families only
    assert [p["kind"] for p in out] == ["restart", "annealing"]
    assert out[0]["payload"]["params"]["restart.patience"] == 5 and out[1]["payload"]["params"]["annealing.t0"] == 2.0
    for p in out:
        validate_proposal(p, FAMILY_SPACE)
        assert "[untried families only; dropped repeats: tabu (evaluated)]" in p["rationale"]
        assert p["payload"]["source"] == builtin_source(p["kind"])  # model-written code, one generation per spec
    assert [c["purpose"] for c in calls] == ["explore", "critique", "specify", "generate", "generate"]


def test_outer_http_all_families_tried_and_all_repeats_are_reasked():
    history = [record(i, {"kind": f, "payload": {"params": {**DEFAULTS, "family": f}}}, 0.01)
               for i, f in enumerate(FAMILIES)]
    repeats = {"specs": [spec("tabu"), spec("annealing"), spec("tabu")]}  # all defaults: all evaluated
    fresh = {"specs": [spec("tabu", tenure=40), spec("tabu", tenure=40), spec("ucb_bandit", exploration=2.5)]}
    calls: list = []
    with ScriptedLLMServer(default=outer_step([repeats, fresh])) as srv:
        out = OuterLLMBackend(make_client(srv, calls), 2, proposals=K).generate(outer_context(history), 4, "o2")
        specify = [b for b in srv.bodies if "response_format" in b]
    variants = specify[0]["response_format"]["json_schema"]["schema"]["properties"]["specs"]["items"]["anyOf"]
    assert {v["properties"]["family"]["const"] for v in variants} == set(FAMILIES)  # all tried: all allowed
    outcomes = [c["outcome"] for c in calls if c["purpose"] == "specify"]
    assert outcomes[0].startswith("parse-error:every spec repeats") and outcomes[1] == "ok"
    assert [p["kind"] for p in out] == ["tabu", "ucb_bandit"]  # the in-reply repeat of tabu was dropped
    assert all("[all families tried; new parameters; dropped repeats: tabu (repeated)]" in p["rationale"]
               for p in out)
    assert [c["purpose"] for c in calls].count("generate") == 2  # one per surviving spec


# ------------------------------------------------------------------------------------ (d) offline model
def test_offline_grammars_hold_k_nested_items():
    """The K-item schemas (arrays of objects holding arrays of anyOf objects) become llama.cpp grammars, and
    the offline grouping splits names / families into K disjoint groups."""
    from recur.core.offline_model import grammar_for, grammar_schema

    names = sorted(SPACE)
    for seed in range(20):
        groups = name_groups(names, K, seed)
        assert len(groups) == K and sorted(n for g in groups for n in g) == names and all(groups)
        allowed = sorted(FAMILIES)[: 3 + seed % 5]
        fams = family_groups(allowed, K, seed, {"stagnation"}, FAMILIES)
        assert len(fams) == K and sorted(f for g in fams for f in g) == allowed and all(fams)
        for g in fams:  # families answering the diagnosis lead their group
            fits = ["stagnation" in FAMILIES[f]["answers"] for f in g]
            assert fits == sorted(fits, reverse=True)
    assert name_groups(["A", "B"], K, 0) in ([["A"], ["B"]], [["B"], ["A"]])
    for schema in (level1_schema(SPACE, names, False, K), level1_schema(SPACE, names, False, K, 60, name_groups(names, K, 3)),
                   specs_schema(sorted(FAMILIES), K, ["stagnation"]),
                   specs_schema(sorted(FAMILIES), K, ["repeats"], family_groups(sorted(FAMILIES), K, 1, set(), FAMILIES))):
        assert grammar_for(schema) is not None
        arr = grammar_schema(schema)["properties"][next(iter(schema["properties"]))]
        assert arr["minItems"] == arr["maxItems"] == K


def test_offline_level1_gives_k_valid_proposals_from_one_call():
    calls: list = []
    client = LLMClient(LLMConfig(model="offline", max_tokens=offline_max_tokens(K, 1), temperature=0.8),
                       on_call=calls.append)
    history = [{"id": "b", "kind": "baseline", "payload": {"baseline": True}, "metric": 1.3, "status": "ok",
                "kept": True}]
    out = Level1LLMBackend(client, proposals=K).generate(level1_context(history, frozen=["SCHEDULE"]), 11, "t1")
    assert len(calls) == 1 and calls[0]["outcome"] == "ok"  # one model call for all K
    items = json.loads(calls[0]["response"])["proposals"]
    assert len(items) == K  # the grammar asked for exactly K
    assert len(out) == K  # disjoint name groups per item: the K edits differ by construction
    groups = name_groups(sorted(n for n in SPACE if n != "SCHEDULE"), K, 11)
    for p, group in zip(out, groups):
        validate_proposal(p, SPACE)
        assert p["payload"]["params"] and set(p["payload"]["params"]) <= set(group)
