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

The concerns around the client live beside it: prompt fitting (``llm_prompt``), JSON answers and schemas
(``llm_json``), errors and their classification (``llm_errors``); their public names are re-exported here.

Importing this module does not import litellm (the CLI must start fast); litellm is imported on first use,
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it never fetches a price list from the network.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from recur.core.llm_errors import (LLMError, NoUsableAnswer, error_message, is_llm_exception, is_retryable,
                                   litellm_module, rejects_response_format, short_error)
from recur.core.llm_json import add_schema_instruction, json_parser, parse_json, validate_json
from recur.core.llm_prompt import (CHARS_PER_TOKEN, CUT_CLOSE, CUT_OPEN, MESSAGE_OVERHEAD_TOKENS, cut_section,
                                   estimate_tokens, fit_messages, messages_tokens)

__all__ = ["LLMClient", "LLMConfig", "LLMReply", "LLMError", "NoUsableAnswer", "parse_json", "validate_json",
           "json_parser", "cut_section", "fit_messages", "estimate_tokens", "CHARS_PER_TOKEN",
           "MESSAGE_OVERHEAD_TOKENS", "CUT_OPEN", "CUT_CLOSE", "OFFLINE_MODEL", "SCRIPTED_MODEL"]

T = TypeVar("T")

OFFLINE_MODEL = "offline"
SCRIPTED_MODEL = "scripted"
OFFLINE_PROVIDER = "recur-offline"
OFFLINE_LITELLM_MODEL = f"{OFFLINE_PROVIDER}/smollm2"
OFFLINE_CONTEXT_TOKENS = 2048


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
                    info = litellm_module().get_model_info(self.litellm_model)
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
        litellm = litellm_module()
        cfg = self.config
        if parse is None:
            parse = json_parser(json_schema) if json_schema is not None else (lambda s: s)  # type: ignore[assignment]

        conversation = [dict(m) for m in messages]
        if json_schema is not None and not self.offline:
            conversation = add_schema_instruction(conversation, json_schema)

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
                            and rejects_response_format(exc)):
                        # the provider cannot do this kind of structured output: step down and ask again at once
                        rec["outcome"] = f"retry:response_format-{self.structured_mode}-rejected"
                        self._step_down()
                        self._emit(rec)
                        tries["n"] -= 1
                        return attempt()
                    if not is_llm_exception(exc):
                        raise  # a bug, not a transport problem: let it surface as it is
                    last = tries["n"] > cfg.max_retries or not is_retryable(exc)
                    rec["outcome"] = (f"error:{error_message(exc, cfg.model)}" if last
                                      else f"retry:{type(exc).__name__}")
                    self._emit(rec)
                    raise
                rec["latency_s"] = time.monotonic() - t0
                usage = getattr(resp, "usage", None)
                text = _response_text(resp)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
                ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
                if not pt:
                    pt = messages_tokens(sent)
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
                retry=tenacity.retry_if_exception(lambda e: is_llm_exception(e) and is_retryable(e)),
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
                if is_llm_exception(exc):
                    n = totals["attempts"]
                    raise LLMError(f"{error_message(exc, cfg.model)} (level {level}, {purpose}, "
                                   f"{n} attempt{'s' if n != 1 else ''})") from exc
                raise
            text = rec["response"]
            try:
                value = parse(text)
            except Exception as exc:  # noqa: BLE001 - any parse failure is a re-ask
                msg = short_error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc), 200)
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
