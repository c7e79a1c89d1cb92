"""`recur run` through litellm's real HTTP path (loopback server) and through the embedded offline model."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from llm_server import ScriptedLLMServer, reply_text, slow, status
from recur.core.trace import TraceStore
from recur.mechanism_store.store import MechanismStore

GOOD = json.dumps({"changes": [{"name": "DEPTH", "value": 5}], "reason": "deeper"})


def test_run_over_http_retries_reasks_and_loses_no_trial(workdir) -> None:
    server = ScriptedLLMServer(default=reply_text(GOOD)).start()
    try:
        server.push(reply_text("this is not json"), status(429), status(500), reply_text(GOOD))
        res = run_cli("run", "--task", "synthetic", "--model", "openai/x", "--api-base", server.api_base,
                      "--max-trials", "6", cwd=workdir, env={"OPENAI_API_KEY": "x"})
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    trials = trace.trials(run_id, level=1)
    assert len(trials) == 6 and all(t["status"] != "running" for t in trials)
    calls = trace.llm_calls(run_id)
    outcomes = [c["outcome"] for c in calls]
    assert any(o.startswith("parse-error") for o in outcomes)
    assert any(o.startswith("retry:") for o in outcomes)
    assert outcomes.count("ok") == 3  # one answer per proposed trial
    proposed = [t for t in trials if not t["candidate"]["payload"].get("baseline")]
    assert all(t["candidate"]["payload"]["params"] == {"DEPTH": 5} for t in proposed)
    assert all(c["model"] for c in calls) and all(c["level"] == 1 for c in calls)


@pytest.mark.long(seconds=35)
def test_run_on_the_embedded_offline_model(workdir) -> None:
    res = run_cli("run", "--task", "synthetic", "--model", "offline", "--max-trials", "5", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    calls = [c for c in trace.llm_calls(run_id) if c["outcome"] == "ok"]
    assert len(calls) == 2
    for c in calls:  # the model's real completions, parsed under the grammar: K proposals in one answer
        assert all(p["changes"] for p in json.loads(c["response"])["proposals"])
        assert c["completion_tokens"] > 0
    assert len(trace.trials(run_id, level=1)) == 5


HOSTILE_MODULE = '''```python
"""Reads the user's files."""
import os
from recur.core.mechanism_api import Mechanism


class Snoop(Mechanism):
    """Lists the home folder while selecting."""

    def select(self, proposals, history, rng):
        os.listdir("/")
        return proposals[0]
```'''

GOOD_MODULE = '''```python
"""Prefer proposals of the kind that has crashed least."""
from recur.core.mechanism_api import Mechanism


class FewestCrashes(Mechanism):
    """Select the proposal whose kind crashed least in the history."""

    def select(self, proposals, history, rng):
        crashes = {}
        for h in history:
            if h.get("status") not in ("ok", "discard", "keep"):
                crashes[h.get("kind")] = crashes.get(h.get("kind"), 0) + 1
        return min(proposals, key=lambda p: crashes.get(p.get("kind"), 0))
```'''


def _run_against(workdir, modules: list[str], *args: str) -> ScriptedLLMServer:
    """`recur run` on the synthetic task against a loopback model that writes ``modules`` in turn; it must
    finish cleanly (exit 0, no traceback). Returns the stopped server (its request bodies)."""
    server = ScriptedLLMServer(default=by_stage(modules)).start()
    try:
        res = run_cli("run", "--task", "synthetic", "--api-base", server.api_base, *args, cwd=workdir,
                      env={"OPENAI_API_KEY": "x"})
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    return server


def by_stage(generate_answers: list[str]):
    """An OpenAI-compatible responder that answers each stage of every level the way a model would."""
    generated = iter(generate_answers)
    specs = iter(range(2, 500))  # a new tenure per request: an evaluated (family, params) is never repeated

    def step(body):
        text = body["messages"][-1]["content"]
        if "Write the mechanism as one Python module" in text or "failed the gate" in text:
            return reply_text(next(generated, HOSTILE_MODULE))(body)
        fmt = json.dumps(body.get("response_format") or {})
        if '"family"' in fmt or "mechanism families" in text:
            return reply_text(json.dumps({"specs": [{"family": "tabu", "params": {"tenure": next(specs)},
                                                     "diagnosis": "stagnation"}]}))(body)
        if "\"changes\"" in fmt or "\"changes\"" in text:
            return reply_text(GOOD)(body)
        return reply_text("The search repeats the same edits; it stagnates.")(body)
    return step


@pytest.mark.long(seconds=29)
def test_model_code_failing_the_gate_is_reasked_then_falls_back(workdir) -> None:
    # candidate 1: hostile code, then a good module on the re-ask; candidate 2: hostile on every attempt
    # level 2 waits for six level-1 decisions (three windows of 2 after the baseline); one pair per race and
    # no screen, so both candidates reach real trials within the budget
    server = _run_against(workdir, [HOSTILE_MODULE, GOOD_MODULE], "--levels", "2", "--window", "2", "--max-trials",
                          "18", "--max-pairs", "1", "--screen-seeds", "0", "--proposals", "1", "--model", "openai/x")
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    steps = trace.trials(run_id, level=2)
    assert all(t["status"] != "running" for t in steps)
    l2 = [t for t in steps if not t["candidate"]["payload"].get("incumbent")][:2]  # the first two candidates
    assert len(l2) == 2
    assert sum(t["outcome"]["cost"].get("trials", 1) for t in trace.trials(run_id, level=1)) == 18
    gen = [c for c in trace.llm_calls(run_id) if c["purpose"] == "generate"]
    outcomes = [c["outcome"] for c in gen]
    # every attempt is in the trace: 1 rejected + 1 accepted, then 1 + 2 re-asks all rejected
    assert outcomes[:2] == [outcomes[0], "ok"] and outcomes[0].startswith("parse-error")
    assert len(gen) >= 5 and all(o.startswith("parse-error") for o in outcomes[2:5])
    assert all("import" in o or "gate" in o for o in outcomes if o != "ok")
    reask = [r for r in server.bodies if "failed the gate" in r["messages"][-1]["content"]]
    assert reask, "the gate's report must be fed back to the model"

    store = MechanismStore(workdir / ".recur" / "store")
    first, second = (store.info(t["candidate"]["payload"]["branch"]) for t in l2)
    assert "class FewestCrashes" in store.source(first.branch)  # the model's own code, after the re-ask
    assert "import os" not in store.source(second.branch)  # fell back to the rendered family template
    assert "rendered the family template" in second.trailers["Diagnosis"]  # and the store says why


@pytest.mark.long(seconds=22)
def test_a_reply_slower_than_the_timeout_is_retried_at_run_level(workdir) -> None:
    server = ScriptedLLMServer(default=reply_text(GOOD)).start()
    try:
        server.push(slow(3.0, reply_text(GOOD)))
        res = run_cli("run", "--task", "synthetic", "--model", "openai/x", "--api-base", server.api_base,
                      "--llm-timeout", "1", "--max-trials", "5", cwd=workdir, env={"OPENAI_API_KEY": "x"})
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    outcomes = [c["outcome"] for c in trace.llm_calls(run_id)]
    assert outcomes[0].startswith("retry:") and "timeout" in outcomes[0].lower()
    assert outcomes.count("ok") == 2 and len(trace.trials(run_id, level=1)) == 5


def test_max_usd_stops_the_run_cleanly(workdir) -> None:
    priced = reply_text(GOOD, prompt_tokens=20000, completion_tokens=2000)  # ~0.004 USD on gpt-4o-mini
    server = ScriptedLLMServer(default=priced).start()
    try:
        args = ("run", "--task", "synthetic", "--model", "openai/gpt-4o-mini", "--api-base", server.api_base,
                "--max-trials", "8")
        res = run_cli(*args, "--max-usd", "0.006", cwd=workdir, env={"OPENAI_API_KEY": "x"})
        assert res.returncode == 0, res.stderr[-2000:]
        assert "the usd budget is spent" in res.stdout and "Traceback" not in res.stderr
        trace = TraceStore(workdir / ".recur" / "trace.db")
        run_id = trace.run()["id"]
        spent = sum(c["cost_usd"] or 0 for c in trace.llm_calls(run_id))
        trials = trace.trials(run_id, level=1)
        assert 0.006 <= spent < 0.02 and 2 < len(trials) < 8  # stopped at the cap, not at the trial budget
        assert all(t["status"] != "running" for t in trials)
        status = run_cli("status", cwd=workdir)
        assert "gpt-4o-mini" in status.stdout and f"{spent:.4f}" in status.stdout
    finally:
        server.stop()


GOOD_LEVEL2_MODULE = '''```python
"""Race model-based families first: level 2's own search, written by level 3."""
from recur.core.mechanism_api import Mechanism

PREFERRED = ("gp_ei", "tpe", "latin_hypercube")


class ModelBasedFirst(Mechanism):
    """Select the proposed family that ranks first in PREFERRED, else the least tried one."""

    def select(self, proposals, history, rng):
        tried = {}
        for h in history:
            tried[h.get("kind")] = tried.get(h.get("kind"), 0) + 1

        def rank(p):
            kind = p.get("kind")
            return (PREFERRED.index(kind) if kind in PREFERRED else len(PREFERRED), tried.get(kind, 0))
        return min(proposals, key=rank)
```'''


@pytest.mark.long(seconds=60)
def test_level_3_writes_a_module_for_level_2s_search_over_http_and_a_gate_failure_is_reasked(workdir) -> None:
    """Level 3 on a real model path (levels 1 and 2 on the scripted baseline): its first answer fails the gate,
    the gate's report goes back to the model, and the novel module it then writes (a select hook over level 2's
    family proposals, not a built-in family) passes the gate and is judged on level 2's search."""
    server = _run_against(workdir, [HOSTILE_MODULE, GOOD_LEVEL2_MODULE], "--levels", "3", "--model", "scripted",
                          "--level-model", "3=openai/x", "--max-trials", "40", "--window", "2", "--meta-window", "3",
                          "--max-pairs", "2", "--seed", "2")
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    gen = [c for c in trace.llm_calls(run_id) if c["purpose"] == "generate"]
    assert gen and all(c["level"] == 3 for c in trace.llm_calls(run_id))
    assert gen[0]["outcome"].startswith("parse-error") and gen[1]["outcome"] == "ok"
    assert any("failed the gate" in r["messages"][-1]["content"] for r in server.bodies)
    steps = [t for t in trace.trials(run_id, level=3) if not t["candidate"]["payload"].get("incumbent")]
    assert steps, "level 3 made a candidate"
    store = MechanismStore(workdir / ".recur" / "store")
    first = store.info(steps[0]["candidate"]["payload"]["branch"])
    assert first.level == 2 and "class ModelBasedFirst" in store.source(first.branch)
    assert steps[0]["status"] != "unsafe"  # it passed the gate and went on to the dry run (and race)
    assert sum(t["outcome"]["cost"].get("trials", 1) for t in trace.trials(run_id, level=1)) == 40
