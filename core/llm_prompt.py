"""Fitting a prompt into a model's context window: marked sections (``cut_section``) are shortened, oldest
first, until the messages fit; a rough token estimate where the model's tokenizer is unknown."""
from __future__ import annotations

import math
import re
from typing import Any, Callable

CHARS_PER_TOKEN = 3.5  # rough token estimate for tokenizers we do not have
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators per message


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


def messages_tokens(messages: list[dict[str, Any]], count: Callable[[str], int] | None = None) -> int:
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
        return messages_tokens([render(i) for i in keep_idx], count)

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
