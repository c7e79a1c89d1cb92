"""Applying level-1 edits to the editable file: parameter edits (libcst) and whole-file unified diffs.

Parameter edits change top-level ``NAME = literal`` constants and nothing else, preserving formatting and
comments. Unknown names, wrong types and out-of-range values are rejected with an ``EditError`` naming the
parameter, so a bad proposal becomes an ``invalid`` trial, never a crash.
"""
from __future__ import annotations

import ast
import math
import re
from typing import Any

import libcst as cst


class EditError(ValueError):
    """A proposal could not be applied; the message says which parameter or hunk and why."""


def read_constants(source: str) -> dict[str, Any]:
    """Top-level ``NAME = <literal>`` assignments of a module."""
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def coerce(name: str, value: Any, spec: dict[str, Any]) -> Any:
    """Check ``value`` against a parameter spec (type, range, choices) and return it in the declared type."""
    kind = spec.get("type", "float")
    if kind == "bool":
        if not isinstance(value, bool):
            raise EditError(f"{name}: expected true/false, got {value!r}")
        return value
    if kind == "choice":
        choices = spec.get("choices", [])
        if value not in choices:
            raise EditError(f"{name}: {value!r} is not one of {choices}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EditError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EditError(f"{name}: {value!r} is not finite")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise EditError(f"{name}: expected an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    low, high = spec.get("low"), spec.get("high")
    if low is not None and value < low or high is not None and value > high:
        raise EditError(f"{name}: {value!r} is outside [{low}, {high}]")
    return value


def _literal(value: Any) -> cst.BaseExpression:
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            return cst.parse_expression(f"{value:.6g}" if "e" in f"{value:.6g}" else text)
    return cst.parse_expression(repr(value))


class _ConstantSetter(cst.CSTTransformer):
    def __init__(self, values: dict[str, Any]):
        self.values = values
        self.seen: set[str] = set()
        self.depth = 0

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # only module-level constants are parameters

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        if len(updated.targets) == 1 and isinstance(updated.targets[0].target, cst.Name):
            name = updated.targets[0].target.value
            if name in self.values:
                self.seen.add(name)
                return updated.with_changes(value=_literal(self.values[name]))
        return updated


def apply_params(source: str, edits: dict[str, Any], space: dict[str, dict[str, Any]], frozen: list[str] = ()) -> str:
    """Return ``source`` with the given top-level constants replaced; validates names, types and ranges."""
    if not isinstance(edits, dict) or not edits:
        raise EditError("a parameter edit needs at least one NAME: value pair")
    clean: dict[str, Any] = {}
    for name, value in edits.items():
        if name not in space:
            raise EditError(f"unknown parameter {name!r}; editable parameters are: {', '.join(sorted(space))}")
        if name in frozen:
            raise EditError(f"{name} is frozen by the current guidance")
        clean[name] = coerce(name, value, space[name])
    setter = _ConstantSetter(clean)
    module = cst.parse_module(source).visit(setter)
    missing = set(clean) - setter.seen
    if missing:
        raise EditError(f"parameter(s) {', '.join(sorted(missing))} are not top-level constants of the file")
    return module.code


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_unified_diff(source: str, diff: str) -> str:
    """Apply a unified diff to ``source`` (context must match exactly) and check the result parses."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    diff_lines = diff.splitlines(keepends=True)
    i = 0
    hunks = 0
    while i < len(diff_lines):
        m = _HUNK.match(diff_lines[i])
        if not m:
            i += 1
            continue
        hunks += 1
        start = int(m.group(1)) - 1 if int(m.group(2) or 1) > 0 else int(m.group(1))
        if start < pos or start > len(lines):
            raise EditError(f"hunk {hunks} starts at line {start + 1}, which does not fit the file")
        out.extend(lines[pos:start])
        pos = start
        i += 1
        while i < len(diff_lines) and not _HUNK.match(diff_lines[i]):
            line = diff_lines[i]
            tag, body = line[:1], line[1:]
            if line.startswith("\\"):
                i += 1
                continue
            if tag in (" ", "-"):
                if pos >= len(lines) or lines[pos].rstrip("\r\n") != body.rstrip("\r\n"):
                    have = lines[pos].rstrip() if pos < len(lines) else "<end of file>"
                    raise EditError(f"hunk {hunks}: line {pos + 1} is {have!r}, the diff expects {body.rstrip()!r}")
                if tag == " ":
                    out.append(lines[pos])
                pos += 1
            elif tag == "+":
                out.append(body if body.endswith("\n") else body + "\n")
            elif line.startswith(("---", "+++")):
                pass
            i += 1
    if hunks == 0:
        raise EditError("the diff has no hunks (expected lines starting with @@)")
    out.extend(lines[pos:])
    result = "".join(out)
    try:
        ast.parse(result)
    except SyntaxError as exc:
        raise EditError(f"the patched file does not parse: line {exc.lineno}: {exc.msg}") from None
    return result
