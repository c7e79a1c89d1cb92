"""What can go wrong calling a model, for people and for retries: the error classes recur raises, which
transport errors are worth another try, one clear line per failure, and whether a provider refused the
request's ``response_format``."""
from __future__ import annotations

import os
import re
import threading
from typing import Any

class LLMError(RuntimeError):
    """An LLM call that could not give a usable answer; ``str(err)`` is one line meant for the user."""


class NoUsableAnswer(LLMError):
    """The model answered, but nothing parsed after every re-ask: a level may fall back to its scripted move."""


_litellm_lock = threading.Lock()
_litellm_mod: Any = None


def litellm_module() -> Any:
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


def status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Transport errors, timeouts, 408/409/429 and 5xx are worth another try; everything else is final."""
    litellm = litellm_module()
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
        code = status_code(exc)
        return code is None or code in (408, 409, 429) or code >= 500
    return False


def is_llm_exception(exc: BaseException) -> bool:
    import httpx

    return type(exc).__module__.startswith(("litellm", "openai")) or isinstance(
        exc, (httpx.HTTPError, TimeoutError, ConnectionError))


def short_error(msg: str, n: int = 300) -> str:
    line = " ".join(str(msg).split())
    line = re.sub(r"^(litellm\.)?\w+(Error|Timeout):\s*", "", line)
    line = re.sub(r"^\w+Exception - ", "", line)
    return line if len(line) <= n else line[: n - 3] + "..."


def error_message(exc: BaseException, model: str) -> str:
    """One clear line for an LLM failure."""
    litellm = litellm_module()
    ex = litellm.exceptions
    detail = short_error(str(exc), 240)
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


def rejects_response_format(exc: BaseException) -> bool:
    """Did the provider refuse the request's ``response_format``? A 400/422 that mentions structured output or
    something unsupported; any other error only when it names ``response_format`` itself (litellm reports
    llama.cpp's server refusing ``json_schema``, a 422 validation error, as an InternalServerError)."""
    litellm = litellm_module()
    if isinstance(exc, litellm.exceptions.ContextWindowExceededError) or not is_llm_exception(exc):
        return False
    text = str(exc).lower()
    if isinstance(exc, (litellm.exceptions.BadRequestError, litellm.exceptions.UnprocessableEntityError)):
        return any(w in text for w in ("response_format", "json_schema", "response format", "structured output",
                                       "unsupported", "not supported"))
    return "response_format" in text
