"""`recur run` through litellm's real HTTP path (loopback server) and through the embedded offline model."""
from __future__ import annotations

import json

from conftest import run_cli
from llm_server import ScriptedLLMServer, reply_text, status
from recur.core.trace import TraceStore

GOOD = json.dumps({"changes": [{"name": "DEPTH", "value": 5}], "reason": "deeper"})


def test_run_over_http_retries_reasks_and_loses_no_trial(workdir) -> None:
    server = ScriptedLLMServer(default=reply_text(GOOD)).start()
    try:
        server.push(reply_text("this is not json"), status(429), status(500), reply_text(GOOD))
        res = run_cli("run", "--task", "synthetic", "--model", "openai/x", "--api-base", server.api_base,
                      "--max-trials", "5", cwd=workdir, env={"OPENAI_API_KEY": "x"})
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    trials = trace.trials(run_id, level=1)
    assert len(trials) == 5 and all(t["status"] != "running" for t in trials)
    calls = trace.llm_calls(run_id)
    outcomes = [c["outcome"] for c in calls]
    assert any(o.startswith("parse-error") for o in outcomes)
    assert any(o.startswith("retry:") for o in outcomes)
    assert outcomes.count("ok") == 3  # one answer per proposed trial
    proposed = [t for t in trials if not t["candidate"]["payload"].get("baseline")]
    assert all(t["candidate"]["payload"]["params"] == {"DEPTH": 5} for t in proposed)
    assert all(c["model"] for c in calls) and all(c["level"] == 1 for c in calls)


def test_run_on_the_embedded_offline_model(workdir) -> None:
    res = run_cli("run", "--task", "synthetic", "--model", "offline", "--max-trials", "4", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    trace = TraceStore(workdir / ".recur" / "trace.db")
    run_id = trace.run()["id"]
    calls = [c for c in trace.llm_calls(run_id) if c["outcome"] == "ok"]
    assert len(calls) == 2
    for c in calls:  # the model's real completions, parsed under the grammar
        assert json.loads(c["response"])["changes"]
        assert c["completion_tokens"] > 0
    assert len(trace.trials(run_id, level=1)) == 4
