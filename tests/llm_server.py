"""A loopback OpenAI-compatible chat-completions server for tests (stdlib only).

    with ScriptedLLMServer() as srv:
        srv.push(reply_text('{"a": 1}'))
        srv.push(status(429), reply_text("ok"))
        client = LLMClient(LLMConfig(model="openai/x", api_base=srv.api_base, api_key="x"))

Each POST to ``/v1/chat/completions`` takes the next scripted step from the queue (when the queue is empty the
``default`` step answers, or a 500 if there is none). Every request received is recorded in ``srv.requests``
(parsed JSON body + path + headers). Steps:

* ``reply_text(text, prompt_tokens=..., completion_tokens=...)`` - a normal completion;
* ``status(code, message)`` - an OpenAI-style error body with that HTTP status (429, 500, 401, 400...);
* ``slow(seconds, then)`` - sleep, then answer with ``then`` (used to trip the client's timeout);
* ``reject_response_format(then)`` - a 400 if the request carries ``response_format``, else ``then``;
* any callable ``step(body) -> (code, dict)``.

Binds 127.0.0.1 on port 0 (a free port), serves in a daemon thread, one thread per connection.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Step = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def reply_text(text: str, prompt_tokens: int = 11, completion_tokens: int = 7, model: str = "x") -> Step:
    def step(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
    return step


def status(code: int, message: str | None = None) -> Step:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             429: "rate_limit_error"}

    def step(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return code, {"error": {"message": message or f"scripted HTTP {code}", "type": kinds.get(code, "server_error"),
                                "param": None, "code": str(code)}}
    return step


def slow(seconds: float, then: Step) -> Step:
    def step(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        time.sleep(seconds)
        return then(body)
    return step


def reject_response_format(then: Step) -> Step:
    def step(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if "response_format" in body:
            return status(400, "Invalid parameter: response_format of type 'json_schema' is not supported "
                               "with this model.")(body)
        return then(body)
    return step


class ScriptedLLMServer:
    """The server; use as a context manager (or call ``start``/``stop``)."""

    def __init__(self, default: Step | None = None):
        self.queue: deque[Step] = deque()
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------- script
    def push(self, *steps: Step) -> "ScriptedLLMServer":
        with self._lock:
            self.queue.extend(steps)
        return self

    def _next(self) -> Step:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        return self.default or status(500, "script exhausted")

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the requests received, in order."""
        return [r["body"] for r in self.requests]

    # --------------------------------------------------------------- server
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ScriptedLLMServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                with server._lock:
                    server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers),
                                            "time": time.time()})
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    code, payload = status(404, f"no route {self.path}")(body)
                else:
                    code, payload = server._next()(body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def do_GET(self) -> None:  # noqa: N802 - /v1/models, for clients that probe it
                data = json.dumps({"object": "list", "data": [{"id": "x", "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="llm-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
