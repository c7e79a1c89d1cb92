"""A model's JSON answer: extracted from prose and code fences, checked against its JSON Schema (the
``jsonschema`` library), and the schema written into the prompt for providers without structured output."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

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


def add_schema_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
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
