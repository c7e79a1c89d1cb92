"""Against llama.cpp's own OpenAI-compatible server (``python -m llama_cpp.server``, the ``[server]`` extra of
llama-cpp-python) running the SmolLM2 GGUF the project already ships: a real server that refuses
``response_format = json_schema``. recur must step down to what it accepts, say so once, and finish the run."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from recur.core.trace import TraceStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def llama_server(tmp_path: Path):
    from recur.core.offline_model import gguf_path

    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
                             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "2048"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    assert json.load(r)["data"][0]["id"] == "smollm2"
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.long(seconds=35)
def test_a_server_that_refuses_json_schema_does_not_end_the_run(llama_server: str, workdir: Path) -> None:
    res = run_cli("run", "--levels", "1", "--task", "synthetic", "--model", "openai/smollm2", "--api-base",
                  llama_server, "--max-trials", "4", "--seed", "2", "--proposals", "1", cwd=workdir, timeout=900,
                  env={"OPENAI_API_KEY": ""})  # a local server needs no key, and the user has none
    assert res.returncode == 0, res.stderr[-3000:]
    said = [line for line in res.stderr.splitlines() if "refused response_format json_schema" in line]
    assert len(said) == 1 and "json_object and the schema" in said[0], res.stderr  # said once, not per call
    calls = TraceStore(workdir / ".recur" / "trace.db").llm_calls()
    outcomes = [c["outcome"] for c in calls]
    assert outcomes[0] == "retry:response_format-json_schema-rejected"
    # after the first refusal the endpoint's mode is remembered: every later request was answered (a 135M model's
    # answer may still fail recur's checks and be re-asked, which is not the server refusing)
    assert outcomes[1:] and all(o == "ok" or o.startswith("parse-error") for o in outcomes[1:]), outcomes
    assert "finished: 4 level-1 trials" in res.stdout
