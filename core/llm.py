"""One LLM client over litellm, used by every level.

``LLMClient.complete`` sends a chat conversation to any litellm model string (``openai/...``,
``anthropic/...``, ``deepseek/...``, ``ollama/...``, ``hosted_vllm/...`` with ``api_base``) or to the embedded
offline model (``offline``: SmolLM2-135M through llama.cpp, registered as the litellm custom provider
``recur-offline``, see ``recur.core.offline_model``) and returns an ``LLMReply`` with the text, the parsed value,
token counts, cost and latency.

Layers, from the wire up:

* **Transport retries** (tenacity, the only retry layer; litellm's ``num_retries`` and the OpenAI SDK's
  ``max_retries`` are set to 0): connection errors, timeouts, 429 and 5xx are retried with exponential backoff
  and jitter up to ``max_retries`` times. Auth errors, bad requests and unknown models raise ``LLMError`` at once.
* **Re-asks**: when ``parse`` raises on the text, the answer and a user message naming the parse error are
  appended to the conversation and the model is asked again, up to ``max_reasks`` times; then ``LLMError``.
* **Structured output**: ``json_schema`` becomes a llama.cpp grammar for the offline model (the output always
  parses and stays inside the schema's enums), ``response_format={"type": "json_schema", ...}`` for other
  providers (dropped for good if the provider rejects it) plus a line in the prompt with the schema.
* **Accounting**: every HTTP attempt calls ``on_call`` with one dict (the trace store's ``llm_calls`` row).

Importing this module does not import litellm (the CLI must start fast); litellm is imported on first use,
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it never fetches a price list from the network.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

T = TypeVar("T")

OFFLINE_MODEL = "offline"
SCRIPTED_MODEL = "scripted"
OFFLINE_PROVIDER = "recur-offline"
OFFLINE_LITELLM_MODEL = f"{OFFLINE_PROVIDER}/smollm2"
OFFLINE_CONTEXT_TOKENS = 2048

CHARS_PER_TOKEN = 3.5  # rough token estimate for tokenizers we do not have
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators per message


class LLMError(RuntimeError):
    """An LLM call that could not give a usable answer; ``str(err)`` is one line meant for the user."""


class NoUsableAnswer(LLMError):
    """The model answered, but nothing parsed after every re-ask: a level may fall back to its scripted move."""


@dataclass
class LLMConfig:
    """Which model to call and how patiently.

    ``max_retries``: transport retries per request (after the first try). ``max_reasks``: extra requests after
    an unparsable answer. ``context_tokens``: the model's context window; None = ask litellm's model table
    (2048 for ``offline``), unknown = no truncation. ``retry_wait_s``/``retry_wait_max_s``: backoff base and cap.
    """

    model: str
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float = 120
    max_retries: int = 4
    max_reasks: int = 2
    temperature: float = 0.7
    max_tokens: int = 512
    context_tokens: int | None = None
    retry_wait_s: float = 1.0
    retry_wait_max_s: float = 30.0


@dataclass
class LLMReply(Generic[T]):
    """The final answer of ``LLMClient.complete``.

    ``text``/``value`` are those of the last (accepted) answer; ``prompt_tokens``, ``completion_tokens``,
    ``cost_usd`` and ``attempts`` are totals over every HTTP attempt of the call (retries and re-asks included),
    so they can be charged to the budget as they are. ``latency_s`` is the wall time of the whole call.
    """

    text: str
    value: T | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    attempts: int
    model: str
    cut_report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- litellm import
_litellm_lock = threading.Lock()
_litellm_mod: Any = None


def _litellm() -> Any:
    """Import litellm once, quietly and without network."""
    global _litellm_mod
    if _litellm_mod is None:
        with _litellm_lock:
            if _litellm_mod is None:
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                import litellm

                litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
                litellm.telemetry = False
                _litellm_mod = litellm
    return _litellm_mod


# ---------------------------------------------------------------------------------------------- fit_messages
CUT_OPEN = "\u27e6cut:"  # ⟦cut:NAME⟧ or ⟦cut:NAME:head⟧
CUT_CLOSE = "\u27e6/cut\u27e7"  # ⟦/cut⟧
_CUT_RE = re.compile("\u27e6cut:([A-Za-z0-9_.-]+)(?::(head|tail))?\u27e7(.*?)\u27e6/cut\u27e7", re.S)


def cut_section(name: str, text: str, keep: str = "tail") -> str:
    """Mark ``text`` as a part ``fit_messages`` may shorten when the prompt is too long.

    ``keep="tail"`` (default) drops the oldest lines first (histories, logs); ``keep="head"`` drops the end.
    The markers never reach the model: ``fit_messages`` (which ``LLMClient.complete`` always runs) strips them.
    """
    if keep not in ("head", "tail"):
        raise ValueError("keep must be 'head' or 'tail'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad section name {name!r}")
    return f"{CUT_OPEN}{name}{':head' if keep == 'head' else ''}\u27e7{text}{CUT_CLOSE}"


def estimate_tokens(text: str) -> int:
    """Approximate token count, len(text)/3.5, for tokenizers we do not have."""
    return int(math.ceil(len(text) / CHARS_PER_TOKEN))


def _messages_tokens(messages: list[dict[str, Any]], count: Callable[[str], int] | None = None) -> int:
    count = count or estimate_tokens
    return sum(count(str(m.get("content") or "")) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def _shorten(text: str, drop_chars: int, keep: str) -> tuple[str, int]:
    """Remove about ``drop_chars`` characters from one end of ``text`` at a line boundary; return (text, removed)."""
    if drop_chars <= 0 or not text:
        return text, 0
    if drop_chars >= len(text):
        return "", len(text)
    if keep == "tail":
        cut = text.find("\n", drop_chars)
        cut = drop_chars if cut < 0 or cut - drop_chars > 200 else cut + 1
        return text[cut:], cut
    cut = text.rfind("\n", 0, len(text) - drop_chars)
    cut = len(text) - drop_chars if cut < 0 or (len(text) - drop_chars) - cut > 200 else cut
    return text[:cut], len(text) - cut


def fit_messages(messages: list[dict[str, Any]], max_tokens: int | None,
                 count: Callable[[str], int] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Shorten a conversation so its estimated size fits ``max_tokens`` prompt tokens; strip cut markers.

    Tokens are counted with ``count(text)`` (the model's tokenizer when known; default len(text)/3.5) plus 4 per
    message. In order, until the prompt fits:
      1. marked sections (``cut_section``) are shortened, the largest first, from their old end (or their
         tail when marked ``keep="head"``), at line boundaries; a note ``[... N characters cut ...]`` stays;
      2. the oldest messages other than the first system message and the last message are dropped;
      3. the largest remaining message is cut in the middle.
    ``max_tokens=None`` only strips markers. Returns (new messages, report) where the report is
    ``{"tokens_before", "tokens_after", "limit", "cuts": [{"section"|"dropped_message"|"message", "chars"}...]}``
    (``cuts`` empty when nothing was removed). The input list is not modified.
    """
    # Each message content becomes a list of parts: plain strings and section dicts.
    parsed: list[list[Any]] = []
    for m in messages:
        content = m.get("content")
        parts: list[Any] = []
        if isinstance(content, str):
            pos = 0
            for mt in _CUT_RE.finditer(content):
                if mt.start() > pos:
                    parts.append(content[pos:mt.start()])
                parts.append({"name": mt.group(1), "keep": mt.group(2) or "tail", "text": mt.group(3), "removed": 0})
                pos = mt.end()
            if pos < len(content):
                parts.append(content[pos:])
        parsed.append(parts)

    def part_text(p: Any) -> str:
        if isinstance(p, str):
            return p
        if not p["removed"]:
            return p["text"]
        note = f"[... {p['removed']} characters cut ...]"
        if not p["text"]:
            return note
        return note + "\n" + p["text"] if p["keep"] == "tail" else p["text"] + "\n" + note

    def render(i: int) -> dict[str, Any]:
        m = dict(messages[i])
        if isinstance(m.get("content"), str):
            m["content"] = "".join(part_text(p) for p in parsed[i])
        return m

    keep_idx = list(range(len(messages)))
    cuts: list[dict[str, Any]] = []

    def total() -> int:
        return _messages_tokens([render(i) for i in keep_idx], count)

    before = total()
    if max_tokens is None or before <= max_tokens:
        out = [render(i) for i in keep_idx]
        return out, {"tokens_before": before, "tokens_after": before, "limit": max_tokens, "cuts": cuts}

    # 1. marked sections, largest first
    while total() > max_tokens:
        sections = [p for i in keep_idx for p in parsed[i] if not isinstance(p, str) and p["text"]]
        if not sections:
            break
        sec = max(sections, key=lambda p: len(p["text"]))
        # characters per token of this section (digits and code tokenise far denser than prose)
        ratio = len(sec["text"]) / max(1, (count or estimate_tokens)(sec["text"]))
        excess_chars = int((total() - max_tokens) * ratio) + 48  # + room for the note
        sec["text"], removed = _shorten(sec["text"], excess_chars, sec["keep"])
        if removed <= 0:
            break
        sec["removed"] += removed
        cuts.append({"section": sec["name"], "chars": removed})

    # 2. drop oldest middle messages
    while total() > max_tokens:
        protected = {keep_idx[-1]}
        if messages[keep_idx[0]].get("role") == "system":
            protected.add(keep_idx[0])
        droppable = [i for i in keep_idx if i not in protected]
        if not droppable:
            break
        i = droppable[0]
        cuts.append({"dropped_message": i, "chars": len(str(render(i).get("content") or ""))})
        keep_idx.remove(i)

    # 3. cut the largest message in the middle
    while total() > max_tokens:
        textual = [j for j in keep_idx if isinstance(messages[j].get("content"), str)]
        if not textual:
            break
        i = max(textual, key=lambda j: len(render(j)["content"]))
        text = render(i)["content"]
        ratio = len(text) / max(1, (count or estimate_tokens)(text))
        excess_chars = int((total() - max_tokens) * ratio) + 64
        if len(text) <= 80:
            break
        drop = min(len(text) - 40, excess_chars + 40)
        mid = len(text) // 2
        a, b = mid - drop // 2, mid - drop // 2 + drop
        parsed[i] = [text[:a] + f"[... {drop} characters cut ...]" + text[b:]]
        cuts.append({"message": i, "chars": drop})

    after = total()
    return [render(i) for i in keep_idx], {"tokens_before": before, "tokens_after": after, "limit": max_tokens,
                                           "cuts": cuts}


# ---------------------------------------------------------------------------------------------- JSON helpers
def parse_json(text: str) -> Any:
    """Parse a JSON value from a model answer, tolerating code fences and prose around one object/array."""
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    if fence:
        s = fence.group(1).strip()
    try:
        return json.loads(s)
    except json.JSONDecodeError as first:
        starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
        if starts:
            start = min(starts)
            end = max(s.rfind("}"), s.rfind("]"))
            if end > start:
                try:
                    return json.loads(s[start:end + 1])
                except json.JSONDecodeError:
                    pass
        raise ValueError(f"not valid JSON: {first.msg} at line {first.lineno} column {first.colno}") from None


def validate_json(value: Any, schema: dict[str, Any]) -> None:
    """Check ``value`` against ``schema`` (JSON Schema, by the ``jsonschema`` library); raise ValueError naming
    the most relevant problem and where it is, a line a re-ask can quote back to the model."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise ValueError(f"{error.json_path}: {error.message[:300]}")


def json_parser(schema: dict[str, Any] | None = None) -> Callable[[str], Any]:
    """A ``parse`` function: ``parse_json`` then ``validate_json`` against ``schema`` (when given)."""

    def parse(text: str) -> Any:
        value = parse_json(text)
        if schema is not None:
            validate_json(value, schema)
        return value

    return parse


# ---------------------------------------------------------------------------------------------- errors
def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None)
    return code if isinstance(code, int) else None


def _is_retryable(exc: BaseException) -> bool:
    """Transport errors, timeouts, 408/409/429 and 5xx are worth another try; everything else is final."""
    litellm = _litellm()
    ex = litellm.exceptions
    if isinstance(exc, (ex.AuthenticationError, ex.NotFoundError, ex.PermissionDeniedError, ex.BadRequestError,
                        ex.UnprocessableEntityError, ex.ContentPolicyViolationError, ex.ContextWindowExceededError,
                        ex.BudgetExceededError)):
        return False
    if isinstance(exc, (ex.RateLimitError, ex.Timeout, ex.APIConnectionError, ex.InternalServerError,
                        ex.ServiceUnavailableError, ex.BadGatewayError)):
        return True
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import httpx

        if isinstance(exc, (httpx.TransportError, httpx.TimeoutException)):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ex.APIError) or type(exc).__module__.startswith(("litellm", "openai")):
        code = _status_code(exc)
        return code is None or code in (408, 409, 429) or code >= 500
    return False


def _is_llm_exception(exc: BaseException) -> bool:
    import httpx

    return type(exc).__module__.startswith(("litellm", "openai")) or isinstance(
        exc, (httpx.HTTPError, TimeoutError, ConnectionError))


def _short(msg: str, n: int = 300) -> str:
    line = " ".join(str(msg).split())
    line = re.sub(r"^(litellm\.)?\w+(Error|Timeout):\s*", "", line)
    line = re.sub(r"^\w+Exception - ", "", line)
    return line if len(line) <= n else line[: n - 3] + "..."


def _error_message(exc: BaseException, model: str) -> str:
    """One clear line for an LLM failure."""
    litellm = _litellm()
    ex = litellm.exceptions
    detail = _short(str(exc), 240)
    if isinstance(exc, ex.AuthenticationError):
        return (f"authentication failed for model {model!r}: set the provider's API key (e.g. OPENAI_API_KEY, "
                f"ANTHROPIC_API_KEY) or pass --api-key ({detail})")
    if isinstance(exc, ex.NotFoundError):
        return f"model {model!r} was not found by its provider (check the model name and --api-base): {detail}"
    if isinstance(exc, ex.ContextWindowExceededError):
        return f"the prompt is longer than model {model!r} accepts: {detail}"
    if isinstance(exc, ex.BadRequestError):
        return f"model {model!r} rejected the request: {detail}"
    return f"{type(exc).__name__} from model {model!r}: {detail}"


# ---------------------------------------------------------------------------------------------- client
class _AttemptFailed(Exception):
    """Internal: carries a transport error out of tenacity together with its attempt record."""


class LLMClient:
    """Calls one model for every level; see the module docstring.

    ``on_call(record)`` is called once per HTTP attempt with keys: level, purpose, trial_id, model, prompt
    (the messages sent, as JSON), response (text or ""), prompt_tokens, completion_tokens, cost_usd, latency_s,
    attempt (1, 2, ... within one ``complete`` call), outcome ("ok", "retry:<ErrorClass>",
    "parse-error:<msg>", "error:<msg>"), cut (the ``fit_messages`` report when something was cut).
    """

    def __init__(self, config: LLMConfig, on_call: Callable[[dict[str, Any]], None] | None = None):
        model = (config.model or "").strip()
        if not model:
            raise LLMError("no model given: use --model offline or a litellm model string such as openai/gpt-4o-mini")
        if model == SCRIPTED_MODEL:
            raise LLMError("model 'scripted' is a non-LLM policy handled by the levels; LLMClient cannot call it")
        self.config = config
        self.on_call = on_call
        self.offline = model == OFFLINE_MODEL
        self.litellm_model = OFFLINE_LITELLM_MODEL if self.offline else model
        self._context_tokens: int | None | bool = False  # False = not looked up yet

    # ------------------------------------------------------------------ info
    @property
    def model(self) -> str:
        return self.config.model

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens, or None when unknown."""
        if self._context_tokens is False:
            ctx = self.config.context_tokens
            if ctx is None and self.offline:
                ctx = OFFLINE_CONTEXT_TOKENS
            if ctx is None:
                try:
                    info = _litellm().get_model_info(self.litellm_model)
                    ctx = info.get("max_input_tokens") or info.get("max_tokens")
                except Exception:
                    ctx = None
            self._context_tokens = int(ctx) if ctx else None
        return self._context_tokens  # type: ignore[return-value]

    def prompt_budget(self) -> int | None:
        """Tokens a prompt may use: the context window less the answer's ``max_tokens`` and a 32-token margin
        for the chat template (None when the context window is unknown)."""
        ctx = self.context_tokens
        return None if ctx is None else max(64, ctx - self.config.max_tokens - 32)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model: exact for ``offline`` (its tokenizer), else len(text)/3.5."""
        if self.offline:
            from recur.core import offline_model

            return offline_model.count_tokens(text)
        return estimate_tokens(text)

    # ------------------------------------------------------------------ calls
    def _prepare(self) -> None:
        if self.offline:
            from recur.core import offline_model

            offline_model.register()  # raises OfflineModelError (an LLMError) when llama-cpp or the gguf is missing

    @property
    def _endpoint(self) -> tuple[str, str]:
        return (self.config.api_base or "", self.litellm_model)

    @property
    def structured_mode(self) -> str:
        """How structured output is asked of this endpoint: ``json_schema``, ``json_object`` (with the schema,
        as llama.cpp's server takes it) or ``prompt`` (the schema only in the prompt; parsing and re-asks)."""
        return STRUCTURED_MODES.get(self._endpoint, "json_schema")

    def _step_down(self) -> str:
        """The endpoint refused this mode: remember the next one for every client of that endpoint, say so once."""
        order = ("json_schema", "json_object", "prompt")
        old = self.structured_mode
        new = order[min(order.index(old) + 1, len(order) - 1)]
        STRUCTURED_MODES[self._endpoint] = new
        where = self.config.api_base or "the provider"
        print(f"recur: {where} ({self.config.model}) refused response_format {old}; asking with "
              + ("response_format json_object and the schema" if new == "json_object"
                 else "the schema in the prompt, parsing and re-asking") + " from now on", file=sys.stderr)
        return new

    def _request_kwargs(self, messages: list[dict[str, Any]], json_schema: dict | None, seed: int | None,
                        use_response_format: bool) -> dict[str, Any]:
        cfg = self.config
        kw: dict[str, Any] = dict(
            model=self.litellm_model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
            timeout=cfg.timeout_s, num_retries=0, max_retries=0,
        )
        if not self.offline:
            kw["drop_params"] = True  # params a known provider cannot take are dropped rather than fatal
            if cfg.api_base:
                kw["api_base"] = cfg.api_base
            if cfg.api_key:
                kw["api_key"] = cfg.api_key
            elif cfg.api_base and self.litellm_model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kw["api_key"] = "no-key"  # a local OpenAI-compatible server needs none; the client insists on one
        if seed is not None:
            kw["seed"] = int(seed)
        mode = self.structured_mode if not self.offline else "json_schema"
        if json_schema is not None and use_response_format and mode == "json_schema":
            name = re.sub(r"[^A-Za-z0-9_-]", "_", str(json_schema.get("title") or "answer"))[:64] or "answer"
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": name, "schema": json_schema, "strict": False}}
        elif json_schema is not None and use_response_format and mode == "json_object":
            kw["response_format"] = {"type": "json_object", "schema": json_schema}
        return kw

    def _emit(self, record: dict[str, Any]) -> None:
        if self.on_call is not None:
            self.on_call(record)

    def complete(self, messages: list[dict[str, Any]], *, level: int, purpose: str,
                 json_schema: dict[str, Any] | None = None, parse: Callable[[str], T] | None = None,
                 seed: int | None = None, trial_id: str | None = None) -> LLMReply[T]:
        """Ask the model; retry transport failures, re-ask unparsable answers, return the parsed reply.

        ``parse`` turns the text into the value (raise to reject it); when None and ``json_schema`` is given the
        text is parsed as JSON and validated against the schema; when both are None the value is the text.
        Raises ``LLMError`` with one clear line when no usable answer came.
        """
        import tenacity

        self._prepare()
        litellm = _litellm()
        cfg = self.config
        if parse is None:
            parse = json_parser(json_schema) if json_schema is not None else (lambda s: s)  # type: ignore[assignment]

        conversation = [dict(m) for m in messages]
        if json_schema is not None and not self.offline:
            conversation = _add_schema_instruction(conversation, json_schema)

        t_start = time.monotonic()
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "attempts": 0}
        cut_report: dict[str, Any] = {}

        def base_record(sent: list[dict[str, Any]]) -> dict[str, Any]:
            rec = {"level": level, "purpose": purpose, "trial_id": trial_id, "model": cfg.model,
                   "prompt": json.dumps(sent, ensure_ascii=False), "response": "", "prompt_tokens": 0,
                   "completion_tokens": 0, "cost_usd": 0.0, "latency_s": 0.0}
            if cut_report.get("cuts"):
                rec["cut"] = cut_report
            return rec

        def one_request(sent: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
            """One HTTP request with tenacity retries; returns (response, attempt record without outcome)."""
            tries = {"n": 0}

            def attempt() -> tuple[Any, dict[str, Any]]:
                tries["n"] += 1
                totals["attempts"] += 1
                rec = base_record(sent)
                rec["attempt"] = totals["attempts"]
                use_rf = self.offline or self.structured_mode != "prompt"
                t0 = time.monotonic()
                try:
                    resp = litellm.completion(**self._request_kwargs(sent, json_schema, seed, use_rf))
                except Exception as exc:  # noqa: BLE001 - classified below
                    rec["latency_s"] = time.monotonic() - t0
                    if (json_schema is not None and use_rf and not self.offline
                            and _rejects_response_format(exc)):
                        # the provider cannot do this kind of structured output: step down and ask again at once
                        rec["outcome"] = f"retry:response_format-{self.structured_mode}-rejected"
                        self._step_down()
                        self._emit(rec)
                        tries["n"] -= 1
                        return attempt()
                    if not _is_llm_exception(exc):
                        raise  # a bug, not a transport problem: let it surface as it is
                    last = tries["n"] > cfg.max_retries or not _is_retryable(exc)
                    rec["outcome"] = (f"error:{_error_message(exc, cfg.model)}" if last
                                      else f"retry:{type(exc).__name__}")
                    self._emit(rec)
                    raise
                rec["latency_s"] = time.monotonic() - t0
                usage = getattr(resp, "usage", None)
                text = _response_text(resp)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
                ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
                if not pt:
                    pt = _messages_tokens(sent)
                if not ct and text:
                    ct = estimate_tokens(text)
                rec.update(response=text, prompt_tokens=pt, completion_tokens=ct, cost_usd=_cost(litellm, resp))
                totals["prompt_tokens"] += pt
                totals["completion_tokens"] += ct
                totals["cost_usd"] += rec["cost_usd"]
                return resp, rec

            retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(cfg.max_retries + 1),
                wait=(tenacity.wait_exponential(multiplier=cfg.retry_wait_s, max=cfg.retry_wait_max_s)
                      + tenacity.wait_random(0, cfg.retry_wait_s)),
                retry=tenacity.retry_if_exception(lambda e: _is_llm_exception(e) and _is_retryable(e)),
                reraise=True,
            )
            return retrying(attempt)

        reasks = 0
        while True:
            sent, cut_report = fit_messages(conversation, self.prompt_budget(),
                                            self.count_tokens if self.offline else None)
            try:
                resp, rec = one_request(sent)
            except Exception as exc:
                if _is_llm_exception(exc):
                    n = totals["attempts"]
                    raise LLMError(f"{_error_message(exc, cfg.model)} (level {level}, {purpose}, "
                                   f"{n} attempt{'s' if n != 1 else ''})") from exc
                raise
            text = rec["response"]
            try:
                value = parse(text)
            except Exception as exc:  # noqa: BLE001 - any parse failure is a re-ask
                msg = _short(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc), 200)
                rec["outcome"] = f"parse-error:{msg}"
                self._emit(rec)
                if reasks >= cfg.max_reasks:
                    raise NoUsableAnswer(f"model {cfg.model!r} gave no usable answer for {purpose} (level {level}) after "
                                   f"{reasks + 1} tries; last problem: {msg}") from exc
                reasks += 1
                conversation = conversation + [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": (
                        f"Your previous answer could not be used: {msg}. Reply again with only the corrected "
                        + ("JSON object that matches the schema." if json_schema is not None else "answer."))},
                ]
                continue
            rec["outcome"] = "ok"
            self._emit(rec)
            return LLMReply(text=text, value=value, prompt_tokens=totals["prompt_tokens"],
                            completion_tokens=totals["completion_tokens"], cost_usd=totals["cost_usd"],
                            latency_s=time.monotonic() - t_start, attempts=totals["attempts"], model=cfg.model,
                            cut_report=cut_report)


def _response_text(resp: Any) -> str:
    try:
        content = resp.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    return content if isinstance(content, str) else ("" if content is None else str(content))


def _cost(litellm: Any, resp: Any) -> float:
    """litellm's price for the call, 0.0 when it does not know the model (never raises)."""
    try:
        hidden = getattr(resp, "_hidden_params", None) or {}
        c = hidden.get("response_cost")
        if c is None:
            c = litellm.completion_cost(completion_response=resp)
        c = float(c or 0.0)
        return c if math.isfinite(c) and c >= 0 else 0.0
    except Exception:  # noqa: BLE001 - unknown models have no price
        return 0.0


STRUCTURED_MODES: dict[tuple[str, str], str] = {}
"""(api_base, model) -> the structured-output mode that endpoint accepts, learnt from its refusals."""


def _rejects_response_format(exc: BaseException) -> bool:
    """Did the provider refuse the request's ``response_format``? A 400/422 that mentions structured output or
    something unsupported; any other error only when it names ``response_format`` itself (litellm reports
    llama.cpp's server refusing ``json_schema``, a 422 validation error, as an InternalServerError)."""
    litellm = _litellm()
    if isinstance(exc, litellm.exceptions.ContextWindowExceededError) or not _is_llm_exception(exc):
        return False
    text = str(exc).lower()
    if isinstance(exc, (litellm.exceptions.BadRequestError, litellm.exceptions.UnprocessableEntityError)):
        return any(w in text for w in ("response_format", "json_schema", "response format", "structured output",
                                       "unsupported", "not supported"))
    return "response_format" in text


def _add_schema_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Append the JSON schema to the last user message, for providers without structured output."""
    note = ("\n\nAnswer with only a JSON object (no prose, no code fences) that matches this JSON schema:\n"
            + json.dumps(schema, separators=(",", ":")))
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            m["content"] = m["content"] + note
            return out
    out.append({"role": "user", "content": note.strip()})
    return out
