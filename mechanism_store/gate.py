"""The gate every mechanism passes before it may become a store candidate: static policy, then properties.

Both layers run on the whole module (never on a diff). Properties run in the sandbox worker, the same
containment the loop uses, so a hook that hangs or eats memory fails the gate instead of the checker.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

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
        def caller(hook: str, args: list, call_seed: int):
            r = sandbox.call("candidate", hook, args, call_seed)
            return r.ok, r.value, r.error, r.seconds

        results = check_properties(caller, hooks, max_examples=max_examples, seed=seed)
    return GateReport(all(r.passed for r in results), hooks, [], results)
