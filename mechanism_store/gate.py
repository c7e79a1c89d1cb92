"""The gate every mechanism passes before it may become a store candidate: static policy, then properties.

Both layers run on the whole module (never on a diff). Properties run in the sandbox worker, the same
containment the loop uses, so a hook that hangs or eats memory fails the gate instead of the checker.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recur.core.mechanism_api import HOOKS
from recur.mechanism_store.policy import Violation, check_source


@dataclass
class GateReport:
    passed: bool
    hooks: list[str]
    violations: list[Violation] = field(default_factory=list)
    properties: list = field(default_factory=list)

    def summary(self) -> str:
        """One line per failure, for re-asking a model and for the store's Status trailer."""
        lines = [f"{v.rule} at line {v.line}, column {v.column}: {v.message}" for v in self.violations]
        lines += [f"property {p.property} of {p.hook} failed: {p.message}"
                  + (f" (counterexample: {p.counterexample[:300]})" if p.counterexample else "")
                  for p in self.properties if not p.passed]
        return "\n".join(lines) or "passed"

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "hooks": list(self.hooks),
                "violations": [[v.rule, v.line, v.column, v.message] for v in self.violations],
                "properties": [[p.hook, p.property, p.passed, p.counterexample, p.message] for p in self.properties]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GateReport":
        from recur.mechanism_store.properties import PropertyResult

        return cls(bool(data["passed"]), list(data["hooks"]), [Violation(*v) for v in data["violations"]],
                   [PropertyResult(*p) for p in data["properties"]])


@functools.lru_cache(maxsize=1)
def gate_fingerprint() -> str:
    """What a gate verdict depends on besides the module: the checker's own code and Hypothesis's version. A
    verdict cached under another fingerprint is never reused."""
    import hypothesis

    from recur.core import mechanism_api, sandbox_worker
    from recur.mechanism_store import policy, properties, strategies

    digest = hashlib.sha256(hypothesis.__version__.encode())
    for module in (mechanism_api, sandbox_worker, policy, properties, strategies, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def cached_gate(source: str, cache_dir: Path | None) -> GateReport:
    """``gate`` with its seed drawn from the module itself, so a verdict is a function of the source: computed
    once per (source, fingerprint) and kept as JSON under ``cache_dir/gate`` (every run and ablation job on the
    machine shares it, as a compiler shares its cache). Property tests are the slowest step of a candidate."""
    key = hashlib.sha256((gate_fingerprint() + "\0" + source).encode()).hexdigest()
    seed = int(key[:8], 16) % 1000
    path = cache_dir / "gate" / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return GateReport.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged entry is recomputed and rewritten
    report = gate(source, seed=seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(report.to_json()))
            os.replace(tmp, path)  # atomic: a concurrent job reads the old state or the whole new one
        except OSError:
            pass  # an unwritable cache only costs time
    return report


def defined_hooks(source: str) -> list[str]:
    """Hook methods the module's Mechanism subclass defines (the ones the activation check counts)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(b, ast.Name) and b.id == "Mechanism") or (isinstance(b, ast.Attribute) and b.attr == "Mechanism")
            for b in node.bases
        ):
            return [n.name for n in node.body if isinstance(n, ast.FunctionDef) and n.name in HOOKS]
    return []


def gate(source: str, max_examples: int = 20, seed: int = 0, call_timeout_s: float = 2.0) -> GateReport:
    """Static policy, then the Hypothesis properties of every defined hook, in the sandbox."""
    violations = check_source(source)
    if violations:
        return GateReport(False, [], violations)
    hooks = defined_hooks(source)
    if not hooks:
        return GateReport(False, [], [Violation("no-hook", 1, 1, "the mechanism overrides no hook; it could never act")])
    from recur.core.sandbox import Sandbox
    from recur.mechanism_store.properties import check_properties

    with Sandbox({"candidate": source}, call_timeout_s=call_timeout_s) as sandbox:
        results = check_properties(sandbox.caller("candidate"), hooks, max_examples=max_examples, seed=seed)
    return GateReport(all(r.passed for r in results), hooks, [], results)
