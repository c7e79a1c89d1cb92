"""Static safety policy for mechanism modules: the first of the two safety layers (the second is core/sandbox.py).

``check_source(source)`` parses an LLM-written mechanism module with libcst and returns every rule it breaks as a
:class:`Violation` (rule id, 1-based line, 1-based column, message); an empty list means the module may go on to
the property tests and the sandbox. ``check_toml(text, known)`` validates an ``active/L<k>.toml`` file.

What the policy is for. A mechanism is plain Python that recur executes inside its search loop. The policy makes
the *easy* escapes impossible and keeps modules inert at import time, so that everything a module does happens
inside a hook call, where the sandbox's time/memory limits apply:

* imports only from the allowlist (:data:`ALLOWED_MODULES` + ``recur.core.mechanism_api``), and only the public,
  non-module members of those modules (``typing.sys``, ``random._os``, ``json.decoder`` are refused, as is
  ``typing.get_type_hints`` which evaluates string annotations); a module object may not escape into a variable;
* no dangerous builtins (eval/exec/compile/open/__import__/globals/...), no ``getattr``-family call unless the
  name is a plain, non-private, non-dunder string literal;
* no dunder attribute access (``x.__class__``, ...; only ``super().__init__`` is allowed), no frame-walk attributes
  (``gi_frame``, ``f_back``, ``tb_frame`` ...), no private attributes except on ``self``/``cls``;
  no ``str.format`` field tricks (``"{0.__class__}".format(x)``), no dunder names as plain names;
* no ``global``/``nonlocal``, no ``async``, no ``yield`` in a hook (hooks return values, never generators);
* module and class bodies contain only imports, docstrings, *bounded* constant assignments, defs and classes;
  decorators, default values, base classes, class keywords and annotations cannot run code at import;
* exactly one module-level ``Mechanism`` subclass, with a docstring, whose hook methods have the arity in
  ``HOOKS``; a size cap and a nesting cap.

``except BaseException`` / ``except KeyboardInterrupt`` / ``except SystemExit`` / ``except GeneratorExit`` and bare
``except:`` are refused (rule ``broad-except``): they swallow the interpreter's own stop signals and make a hook
unkillable by anything softer than SIGKILL. ``except Exception`` stays allowed (too common to forbid; note that it
does catch MemoryError and RecursionError - the sandbox's wall-clock kill covers a hook that loops on those).

The static policy is not the containment: Python has too many paths to object internals for a syntactic check
to be complete. The real boundary is the sandbox worker process (rlimits, wall-clock kill, JSON-only pipe).
"""
from __future__ import annotations

import ast
import importlib
import math
import re
import string
import tomllib
import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from recur.core import mechanism_api
from recur.core.mechanism_api import HOOKS

__all__ = [
    "Violation",
    "RULES",
    "ALLOWED_MODULES",
    "API_MODULE",
    "check_source",
    "check_toml",
    "format_violations",
]


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``line`` and ``column`` are 1-based (libcst's ``PositionProvider`` column + 1)."""

    rule: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: [{self.rule}] {self.message}"


RULES: dict[str, str] = {
    "syntax-error": "the source does not parse as Python 3.11",
    "size-cap": "the source is larger than the size cap",
    "too-complex": "the syntax tree is nested too deeply",
    "import-not-allowed": "import of a module or member outside the allowlist (incl. relative imports)",
    "import-star": "`from X import *` (hides which names a module uses)",
    "module-attribute": "access to a non-allowlisted member of an imported module, or mutation of an imported object",
    "module-alias": "a module object used as a value (it could escape the attribute allowlist)",
    "forbidden-builtin": "use of eval/exec/compile/open/__import__/globals/locals/vars/input/breakpoint/exit/...",
    "dynamic-attribute": "getattr/setattr/delattr/hasattr with a non-literal, private or dunder name, or not called",
    "dunder-attribute": "access to a `__dunder__` attribute (only `super().__init__` is allowed)",
    "dunder-name": "a `__dunder__` plain name, or a dunder method outside the allowlist",
    "dunder-string": "a string literal containing a `__dunder__` name (outside docstrings)",
    "frame-attribute": "access to frame/generator/traceback/code internals (gi_frame, f_back, tb_frame, ...)",
    "private-attribute": "access to a `_private` attribute of anything but self/cls",
    "format-string": "str.format/format_map on a non-literal template or with attribute/index fields",
    "global-statement": "`global` or `nonlocal`",
    "module-level-code": "module level holds something other than imports, docstring, constants, defs and classes",
    "class-level-code": "class body holds something other than docstring, constants and defs",
    "class-keyword": "class keywords (metaclass=...) or non-name base classes (run code at import)",
    "decorator": "a decorator outside the allowlist (decorators run code at import)",
    "default-argument": "a default argument value that is not a bounded constant (defaults run at import)",
    "annotation-code": "an annotation that is not a type expression (annotations may run at import)",
    "async": "async def / await / async for / async with",
    "generator-hook": "`yield` inside a hook method (hooks must return values)",
    "broad-except": "bare `except:` or catching BaseException/KeyboardInterrupt/SystemExit/GeneratorExit",
    "mechanism-class": "not exactly one module-level Mechanism subclass, or it cannot be instantiated without args",
    "missing-docstring": "the Mechanism subclass has no docstring",
    "hook-arity": "a hook whose signature does not match HOOKS (or that is not a plain instance method)",
    "no-hook": "the Mechanism subclass overrides none of the hooks",
    # active/L<k>.toml
    "toml-syntax": "the TOML does not parse",
    "toml-shape": "the TOML is not `mechanisms = [\"slug\", ...]` plus optional `[params.slug]` tables",
    "unknown-mechanism": "a slug that is not a known mechanism",
    "duplicate-mechanism": "a slug listed twice",
    "toml-params": "a params table for an inactive mechanism, or a value that is not a JSON-like literal",
}

ALLOWED_MODULES: tuple[str, ...] = mechanism_api.ALLOWED_MODULES
API_MODULE = "recur.core.mechanism_api"
API_NAMES: frozenset[str] = frozenset(mechanism_api.__all__)  # the base class and its pure helpers

# Public members that are still unsafe: get_type_hints evaluates string annotations with the function's globals
# (i.e. with builtins: `def f(x: "open('/etc/passwd')")`); singledispatch(.register) calls get_type_hints.
DENIED_MEMBERS: dict[str, frozenset[str]] = {
    "typing": frozenset({"get_type_hints"}),
    "functools": frozenset({"singledispatch", "singledispatchmethod"}),
}

FORBIDDEN_BUILTINS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input", "breakpoint",
    "exit", "quit", "help", "memoryview", "copyright", "credits", "license", "__build_class__",
})
ATTR_BUILTINS: frozenset[str] = frozenset({"getattr", "setattr", "delattr", "hasattr"})
FRAME_ATTRS: frozenset[str] = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin",
    "ag_frame", "ag_code", "ag_await", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace",
    "tb_frame", "tb_next", "func_globals", "func_code", "func_closure", "func_defaults",
    "co_code", "co_consts", "co_names", "im_func", "im_self", "im_class",
})
FORMAT_ATTRS: frozenset[str] = frozenset({"format", "format_map"})
ALLOWED_DUNDER_METHODS: frozenset[str] = frozenset({
    "__init__", "__post_init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
    "__ge__", "__hash__", "__len__", "__iter__", "__next__", "__contains__", "__getitem__", "__bool__",
})
ALLOWED_DUNDER_STORES: frozenset[str] = frozenset({"__all__", "__slots__", "__version__"})
BROAD_EXCEPTIONS: frozenset[str] = frozenset({"BaseException", "KeyboardInterrupt", "SystemExit", "GeneratorExit"})
CONST_CALLS: frozenset[str] = frozenset({"float", "int", "str", "bool", "tuple", "list", "set", "frozenset", "dict"})
PLAIN_DECORATORS: frozenset[str] = frozenset({"staticmethod", "classmethod", "property"})

MAX_DEPTH = 64           # ast nesting depth (protects libcst's parser/visitor and CPython's compiler)
MAX_CONST_LEN = 10_000   # elements/characters of one constant
MAX_CONST_INT_BITS = 4096

_DUNDER = re.compile(r"^__\w+__$")
_DUNDER_IN = re.compile(r"__[A-Za-z0-9_]*[A-Za-z0-9]__")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_dunder(name: str) -> bool:
    return bool(_DUNDER.match(name))


@lru_cache(maxsize=None)
def module_members(module: str) -> frozenset[str]:
    """Names a mechanism may use from an allowlisted module: public, not themselves modules, not denied."""
    if module == API_MODULE:
        return API_NAMES
    mod = importlib.import_module(module)
    names = {
        n for n in dir(mod)
        if not n.startswith("_") and not isinstance(getattr(mod, n, None), types.ModuleType)
    }
    return frozenset(names - DENIED_MEMBERS.get(module, frozenset()))


# ---------------------------------------------------------------------------------------------------------------
# Bounded constant evaluation (module/class constants, default values, decorator arguments)


class _NotConst(Exception):
    pass


_BINOPS: dict[type, Any] = {
    cst.Add: lambda a, b: a + b,
    cst.Subtract: lambda a, b: a - b,
    cst.Multiply: lambda a, b: a * b,
    cst.Divide: lambda a, b: a / b,
    cst.FloorDivide: lambda a, b: a // b,
    cst.Modulo: lambda a, b: a % b,
    cst.Power: lambda a, b: a ** b,
    cst.BitOr: lambda a, b: a | b,
    cst.BitAnd: lambda a, b: a & b,
    cst.BitXor: lambda a, b: a ^ b,
    cst.LeftShift: lambda a, b: a << b,
    cst.RightShift: lambda a, b: a >> b,
}


def _size(v: Any) -> int:
    if isinstance(v, (str, bytes, tuple, list, set, frozenset, dict)):
        return len(v)
    return 1


def _int_bits(v: Any) -> int:
    return abs(v).bit_length() if isinstance(v, int) and not isinstance(v, bool) else 0


def _check_bounds(v: Any) -> Any:
    if _size(v) > MAX_CONST_LEN:
        raise _NotConst(f"constant has more than {MAX_CONST_LEN} elements")
    if _int_bits(v) > MAX_CONST_INT_BITS:
        raise _NotConst(f"integer constant larger than {MAX_CONST_INT_BITS} bits")
    return v


def _safe_binop(op: cst.BaseBinaryOp, a: Any, b: Any) -> Any:
    kind = type(op)
    if kind not in _BINOPS:
        raise _NotConst("operator not allowed in a constant")
    if kind is cst.Multiply:
        for x, y in ((a, b), (b, a)):
            if isinstance(x, (str, bytes, tuple, list)) and isinstance(y, int):
                if len(x) * max(y, 0) > MAX_CONST_LEN:
                    raise _NotConst("sequence repetition too large for a constant")
    if kind is cst.Power and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        base = abs(a)
        if base > 1 and b > 0 and b * math.log2(base) > MAX_CONST_INT_BITS:
            raise _NotConst("power too large for a constant")
    if kind is cst.Modulo and isinstance(a, (str, bytes)):
        raise _NotConst("%-formatting is not a constant")  # "%*d" % (10**9, 1) would allocate a gigabyte
    if kind is cst.LeftShift and isinstance(b, int) and b > MAX_CONST_INT_BITS:
        raise _NotConst("shift too large for a constant")
    try:
        return _check_bounds(_BINOPS[kind](a, b))
    except _NotConst:
        raise
    except Exception as exc:  # ZeroDivisionError, TypeError, OverflowError ...
        raise _NotConst(f"constant expression raises {type(exc).__name__}") from None


def _string_value(node: cst.BaseExpression) -> str | None:
    """The value of a plain (non-f) string literal, implicit concatenations included; else None."""
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        try:
            v = node.evaluated_value
        except Exception:
            return None
        if isinstance(v, bytes):
            return v.decode("latin-1")
        return v if isinstance(v, str) else None
    return None


# ---------------------------------------------------------------------------------------------------------------


LOAD, STORE, DEL = "load", "store", "del"


class _Checker(cst.CSTVisitor):

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, cst.CSTNode, str]] = []  # positions are resolved only when needed
        self.module_aliases: dict[str, str] = {}            # local name -> allowlisted module
        self.imported: dict[str, tuple[str, str]] = {}       # local name -> (module, member)
        self.mechanism_names: set[str] = set()               # Mechanism + module-level subclasses
        self.const_env: dict[str, Any] = {}                  # module-level constants seen so far
        self.classes: dict[str, cst.ClassDef] = {}
        self._skip_names: set[int] = set()                   # Name nodes that are not references
        self._attr_bases: set[int] = set()                   # Name nodes that are an Attribute's .value
        self._ok_calls: set[int] = set()                     # getattr-family Name nodes validated as calls
        self._skip_strings: set[int] = set()                 # docstrings / bare string statements
        self._func_stack: list[tuple[str, bool]] = []        # (name, is_hook)
        self._class_stack: list[cst.ClassDef] = []
        self._mech_class_ids: set[int] = set()
        self._helper_ids: set[int] = set()                   # module-local bases of the Mechanism subclass
        self._class_envs: dict[int, dict[str, Any]] = {}
        self._marks: dict[int, str] = {}                     # Name/Attribute/Subscript -> STORE/DEL

    # -- reporting -------------------------------------------------------------------------------------------
    def report(self, rule: str, node: cst.CSTNode, message: str) -> None:
        self.found.append((rule, node, message))

    def violations(self, positions: Mapping[cst.CSTNode, Any]) -> list[Violation]:
        out = []
        for rule, node, message in self.found:
            rng = positions.get(node)
            line, col = (rng.start.line, rng.start.column + 1) if rng is not None else (1, 1)
            out.append(Violation(rule, max(line, 1), max(col, 1), message))
        return out

    # Expression context (load/store/del), marked by the parent statement before its children are visited:
    # cheaper than libcst's ExpressionContextProvider, which is one more full pass over the tree.
    def _ctx(self, node: cst.CSTNode) -> str:
        return self._marks.get(id(node), LOAD)

    def _mark(self, target: cst.CSTNode, ctx: str) -> None:
        if isinstance(target, (cst.Name, cst.Attribute, cst.Subscript)):
            self._marks[id(target)] = ctx
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self._mark(el.value, ctx)
        elif isinstance(target, cst.StarredElement):
            self._mark(target.value, ctx)

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._mark(t.target, STORE)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._mark(node.target, STORE)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._mark(node.target, STORE)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._mark(node.target, STORE)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._mark(node.target, STORE)
        if node.asynchronous is not None:
            self.report("async", node, "`async for` is not allowed")

    def visit_AsName(self, node: cst.AsName) -> None:  # with ... as x / except E as x
        self._mark(node.name, STORE)

    def visit_Del(self, node: cst.Del) -> None:
        self._mark(node.target, DEL)

    # -- helpers ----------------------------------------------------------------------------------------------
    def _root_name(self, node: cst.BaseExpression) -> cst.Name | None:
        while isinstance(node, (cst.Attribute, cst.Subscript)):
            node = node.value
        return node if isinstance(node, cst.Name) else None

    def _resolve(self, node: cst.BaseExpression) -> str | None:
        """Dotted origin of a Name/Attribute built from imports: `lru_cache` -> 'functools.lru_cache'."""
        if isinstance(node, cst.Name):
            if node.value in self.imported:
                mod, member = self.imported[node.value]
                return f"{mod}.{member}"
            if node.value in self.module_aliases:
                return self.module_aliases[node.value]
            return node.value
        if isinstance(node, cst.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr.value}" if base else None
        return None

    def const_value(self, node: cst.BaseExpression, env: dict[str, Any] | None = None) -> Any:
        """Evaluate a bounded constant expression, or raise _NotConst."""
        env = self.const_env if env is None else env
        if isinstance(node, (cst.Integer, cst.Float, cst.Imaginary)):
            return _check_bounds(node.evaluated_value)
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            if isinstance(node, cst.ConcatenatedString):
                # f-string pieces are not constants
                for part in (node.left, node.right):
                    if not isinstance(part, (cst.SimpleString, cst.ConcatenatedString)):
                        raise _NotConst("f-strings are not constants")
            try:
                return _check_bounds(node.evaluated_value)
            except _NotConst:
                raise
            except Exception:
                raise _NotConst("string literal could not be evaluated") from None
        if isinstance(node, cst.Ellipsis):
            return ...
        if isinstance(node, cst.Name):
            if node.value in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.value]
            if node.value in env:
                return env[node.value]
            raise _NotConst(f"`{node.value}` is not a constant defined above")
        if isinstance(node, cst.Attribute):
            origin = self._resolve(node)
            if origin and isinstance(node.value, cst.Name) and node.value.value in self.module_aliases:
                mod = self.module_aliases[node.value.value]
                if node.attr.value in module_members(mod) and mod != API_MODULE:
                    v = getattr(importlib.import_module(mod), node.attr.value, None)
                    if isinstance(v, (int, float, str, bool)) or v is None:
                        return v
            raise _NotConst("attribute is not a module constant")
        if isinstance(node, cst.UnaryOperation):
            v = self.const_value(node.expression, env)
            try:
                if isinstance(node.operator, cst.Minus):
                    return -v
                if isinstance(node.operator, cst.Plus):
                    return +v
                if isinstance(node.operator, cst.Not):
                    return not v
                if isinstance(node.operator, cst.BitInvert):
                    return ~v
            except Exception as exc:
                raise _NotConst(f"constant expression raises {type(exc).__name__}") from None
            raise _NotConst("operator not allowed in a constant")
        if isinstance(node, cst.BinaryOperation):
            return _safe_binop(node.operator, self.const_value(node.left, env), self.const_value(node.right, env))
        if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
            items = []
            for el in node.elements:
                if isinstance(el, cst.StarredElement):
                    raise _NotConst("starred element in a constant")
                items.append(self.const_value(el.value, env))
            try:
                result = {cst.Tuple: tuple, cst.List: list, cst.Set: set}[type(node)](items)
            except TypeError:
                raise _NotConst("unhashable set element") from None
            return _check_bounds(result)
        if isinstance(node, cst.Dict):
            out = {}
            for el in node.elements:
                if not isinstance(el, cst.DictElement):
                    raise _NotConst("`**` in a constant dict")
                try:
                    out[self.const_value(el.key, env)] = self.const_value(el.value, env)
                except TypeError:
                    raise _NotConst("unhashable dict key") from None
            return _check_bounds(out)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in CONST_CALLS:
            if node.func.value in self.imported or node.func.value in env:
                raise _NotConst("constructor name is shadowed")
            args = []
            for a in node.args:
                if a.keyword is not None or a.star:
                    raise _NotConst("only positional arguments in a constant constructor call")
                args.append(self.const_value(a.value, env))
            if len(args) > 1:
                raise _NotConst("constant constructor takes at most one argument")
            fn = {"float": float, "int": int, "str": str, "bool": bool, "tuple": tuple, "list": list,
                  "set": set, "frozenset": frozenset, "dict": dict}[node.func.value]
            if fn is str and args and not isinstance(args[0], (str, int, float, bool, type(None))):
                raise _NotConst("str() of a container is not a constant")  # its repr could be huge
            try:
                return _check_bounds(fn(*args))
            except _NotConst:
                raise
            except Exception as exc:
                raise _NotConst(f"constant expression raises {type(exc).__name__}") from None
        raise _NotConst(f"{type(node).__name__} is not a constant expression")

    def _is_const(self, node: cst.BaseExpression, env: dict[str, Any] | None = None) -> str | None:
        try:
            self.const_value(node, env)
            return None
        except _NotConst as exc:
            return str(exc)
        except RecursionError:
            return "constant expression too deep"

    # -- annotations ------------------------------------------------------------------------------------------
    def _type_expr_ok(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, (cst.Name, cst.SimpleString, cst.ConcatenatedString, cst.Ellipsis,
                             cst.Integer, cst.Float)):
            return not isinstance(node, cst.ConcatenatedString) or _string_value(node) is not None
        if isinstance(node, cst.Attribute):
            return self._type_expr_ok(node.value)
        if isinstance(node, cst.Subscript):
            if not self._type_expr_ok(node.value):
                return False
            for el in node.slice:
                if not isinstance(el.slice, cst.Index) or not self._type_expr_ok(el.slice.value):
                    return False
            return True
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr):
            return self._type_expr_ok(node.left) and self._type_expr_ok(node.right)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
            return isinstance(node.expression, (cst.Integer, cst.Float))
        if isinstance(node, (cst.List, cst.Tuple)):
            return all(isinstance(e, cst.Element) and self._type_expr_ok(e.value) for e in node.elements)
        return False

    def visit_Annotation(self, node: cst.Annotation) -> None:
        if not self._type_expr_ok(node.annotation):
            self.report("annotation-code", node.annotation,
                        "annotations must be type expressions (names, subscripts, `|`, string literals); "
                        "they are evaluated at import")

    # -- module structure -------------------------------------------------------------------------------------
    def visit_Module(self, node: cst.Module) -> None:
        for stmt in node.body:
            self._check_module_stmt(stmt)
        self._check_mechanism_classes(node)

    def collect_imports(self, tree: ast.AST) -> None:
        """Names bound by allowlisted imports anywhere in the module (from the ast: one cheap C-level walk)."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name not in ALLOWED_MODULES:
                        continue
                    if alias.asname:
                        self.module_aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.module_aliases[top] = top
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level or (mod not in ALLOWED_MODULES and mod != API_MODULE):
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    local = alias.asname or alias.name
                    self.imported[local] = (mod, alias.name)
                    if mod == API_MODULE and alias.name == "Mechanism":
                        self.mechanism_names.add(local)

    def _check_module_stmt(self, stmt: cst.CSTNode) -> None:
        if isinstance(stmt, cst.FunctionDef):
            return
        if isinstance(stmt, cst.ClassDef):
            self.classes[stmt.name.value] = stmt
            return
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self._check_simple_stmt(small, self.const_env, "module-level-code", "module level")
            return
        self.report("module-level-code", stmt,
                    f"`{type(stmt).__name__}` at module level: module level may hold only imports, a docstring, "
                    "constant assignments, defs and classes")

    def _check_simple_stmt(self, small: cst.BaseSmallStatement, env: dict[str, Any], rule: str,
                           where: str) -> None:
        if isinstance(small, (cst.Import, cst.ImportFrom)):
            if rule == "class-level-code":
                self.report(rule, small, "imports belong at module level")
            return
        if isinstance(small, cst.Pass):
            return
        if isinstance(small, cst.Expr):
            if _string_value(small.value) is not None:
                return
            self.report(rule, small, f"expression statement at {where} runs code at import")
            return
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
            bad = [t for t in targets if not isinstance(t, cst.Name)]
            if bad:
                self.report(rule, bad[0], f"at {where} only plain names may be assigned")
                return
            why = self._is_const(small.value, env)
            if why:
                self.report(rule, small.value, f"assignment at {where} must be a bounded constant: {why}")
                return
            value = self.const_value(small.value, env)
            for t in targets:
                env[t.value] = value
            return
        if isinstance(small, cst.AnnAssign):
            if not isinstance(small.target, cst.Name):
                self.report(rule, small.target, f"at {where} only plain names may be assigned")
                return
            if small.value is not None:
                why = self._is_const(small.value, env)
                if why:
                    self.report(rule, small.value, f"assignment at {where} must be a bounded constant: {why}")
                    return
                env[small.target.value] = self.const_value(small.value, env)
            return
        self.report(rule, small, f"`{type(small).__name__}` statement at {where}")

    def _check_mechanism_classes(self, module: cst.Module) -> None:
        mech: list[cst.ClassDef] = []
        for stmt in module.body:
            if not isinstance(stmt, cst.ClassDef):
                continue
            base_names = {a.value.value for a in stmt.bases if isinstance(a.value, cst.Name)}
            if base_names & self.mechanism_names:
                mech.append(stmt)
                self.mechanism_names.add(stmt.name.value)
                self._mech_class_ids.add(id(stmt))
        if not any(v == (API_MODULE, "Mechanism") for v in self.imported.values()):
            self.report("mechanism-class", module,
                        f"the module must import Mechanism: `from {API_MODULE} import Mechanism`")
            return
        if not mech:
            self.report("mechanism-class", module, "no module-level class derives from Mechanism")
            return
        if len(mech) > 1:
            for extra in mech[1:]:
                self.report("mechanism-class", extra,
                            f"exactly one Mechanism subclass allowed; `{extra.name.value}` is another "
                            f"(first: `{mech[0].name.value}`)")
        cls = mech[0]
        if self._docstring(cls.body) is None:
            self.report("missing-docstring", cls, f"Mechanism subclass `{cls.name.value}` needs a docstring")
        # hooks defined on the class or on module-local helper bases
        hook_defs: list[cst.FunctionDef] = []
        owners = [cls] + [self.classes[a.value.value] for a in cls.bases
                          if isinstance(a.value, cst.Name) and a.value.value in self.classes]
        for owner in owners[1:]:
            self._helper_ids.add(id(owner))
        for owner in owners:
            for stmt in self._body(owner.body):
                if isinstance(stmt, cst.FunctionDef) and stmt.name.value in HOOKS:
                    hook_defs.append(stmt)
                    self._check_hook_signature(stmt)
                elif isinstance(stmt, cst.SimpleStatementLine):
                    for small in stmt.body:
                        tgts = []
                        if isinstance(small, cst.Assign):
                            tgts = [t.target for t in small.targets]
                        elif isinstance(small, cst.AnnAssign):
                            tgts = [small.target]
                        for t in tgts:
                            if isinstance(t, cst.Name) and t.value in HOOKS:
                                self.report("hook-arity", t, f"hook `{t.value}` must be a method (def)")
                elif isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__init__" and owner is cls:
                    self._check_init(stmt)
        if not hook_defs:
            self.report("no-hook", cls,
                        f"`{cls.name.value}` overrides none of the hooks ({', '.join(HOOKS)}); it would never run")

    def _check_init(self, fn: cst.FunctionDef) -> None:
        p = fn.params
        required = [x for x in list(p.posonly_params) + list(p.params)[1:] if x.default is None]
        required += [x for x in p.kwonly_params if x.default is None]
        if required:
            self.report("mechanism-class", fn,
                        "the Mechanism subclass is instantiated without arguments; `__init__` may take only self")

    def _check_hook_signature(self, fn: cst.FunctionDef) -> None:
        name = fn.name.value
        arity = HOOKS[name]
        p = fn.params
        positional = list(p.posonly_params) + list(p.params)
        problems = []
        if fn.decorators:
            problems.append("it must be a plain instance method (no decorators)")
        if isinstance(p.star_arg, (cst.Param, cst.ParamStar)) or p.kwonly_params or p.star_kwarg is not None:
            problems.append("no *args, keyword-only parameters or **kwargs")
        if len(positional) != arity + 1:
            problems.append(f"it takes self + {arity} argument(s), got {max(len(positional) - 1, 0)}")
        if problems:
            self.report("hook-arity", fn, f"hook `{name}`: " + "; ".join(problems))

    @staticmethod
    def _body(block: cst.BaseSuite) -> Iterable[cst.CSTNode]:
        return block.body if isinstance(block, cst.IndentedBlock) else block.body

    def _docstring(self, block: cst.BaseSuite) -> str | None:
        body = list(self._body(block))
        if not body:
            return None
        first = body[0]
        if isinstance(first, cst.SimpleStatementLine) and first.body and isinstance(first.body[0], cst.Expr):
            return _string_value(first.body[0].value)
        if isinstance(first, cst.Expr):
            return _string_value(first.value)
        return None

    # -- classes ----------------------------------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        nested = bool(self._class_stack or self._func_stack)
        if nested and (
            {a.value.value for a in node.bases if isinstance(a.value, cst.Name)} & self.mechanism_names
        ) and id(node) not in self._mech_class_ids:
            self.report("mechanism-class", node, "a Mechanism subclass must be defined at module level")
        self._check_def_name(node.name, is_class=True)
        for kw in node.keywords:
            self.report("class-keyword", kw, "class keywords (metaclass=...) run code at import")
        for base in node.bases:
            if base.star or base.keyword is not None:
                self.report("class-keyword", base, "starred or keyword base classes are not allowed")
            elif not isinstance(base.value, (cst.Name, cst.Attribute)):
                self.report("class-keyword", base, "base classes must be plain names (a call would run at import)")
        for dec in node.decorators:
            self._check_class_decorator(dec)
        env = dict(self.const_env)
        for stmt in self._body(node.body):
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
                continue
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    self._check_simple_stmt(small, env, "class-level-code", "class level")
                continue
            self.report("class-level-code", stmt,
                        f"`{type(stmt).__name__}` in a class body: class bodies run at import and may hold only "
                        "a docstring, constant assignments and defs")
        self._class_envs[id(node)] = env
        self._class_stack.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._class_stack.pop()

    def _check_class_decorator(self, dec: cst.Decorator) -> None:
        expr = dec.decorator
        target = expr.func if isinstance(expr, cst.Call) else expr
        if self._resolve(target) == "dataclasses.dataclass":
            if isinstance(expr, cst.Call):
                for a in expr.args:
                    if a.keyword is None or self._is_const(a.value):
                        self.report("decorator", a, "dataclass options must be keyword constants")
            return
        self.report("decorator", dec, "class decorators other than dataclasses.dataclass are not allowed "
                                      "(decorators run code at import)")

    # -- functions --------------------------------------------------------------------------------------------
    def _check_def_name(self, name: cst.Name, is_class: bool = False) -> None:
        self._skip_names.add(id(name))
        if is_dunder(name.value):
            in_class = bool(self._class_stack) and not self._func_stack
            if is_class or not in_class or name.value not in ALLOWED_DUNDER_METHODS:
                self.report("dunder-name", name,
                            f"defining `{name.value}` is not allowed (allowed dunder methods: "
                            f"{', '.join(sorted(ALLOWED_DUNDER_METHODS))})")

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._check_def_name(node.name)
        if node.asynchronous is not None:
            self.report("async", node, "async functions are not allowed (hooks are synchronous)")
        direct_method = bool(self._class_stack) and not self._func_stack
        is_hook = direct_method and node.name.value in HOOKS and (
            id(self._class_stack[-1]) in self._mech_class_ids or id(self._class_stack[-1]) in self._helper_ids)
        for dec in node.decorators:
            self._check_function_decorator(dec)
        env = self._class_envs.get(id(self._class_stack[-1])) if direct_method else None
        self._check_defaults(node.params, env)
        self._func_stack.append((node.name.value, is_hook))

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._func_stack.pop()

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self._check_defaults(node.params)
        self._func_stack.append(("<lambda>", False))

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        self._func_stack.pop()

    def visit_Param(self, node: cst.Param) -> None:
        if is_dunder(node.name.value):
            self.report("dunder-name", node.name, f"parameter name `{node.name.value}` is a dunder name")
        self._skip_names.add(id(node.name))

    def _check_defaults(self, params: cst.Parameters, env: dict[str, Any] | None = None) -> None:
        for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params):
            if p.default is not None:
                why = self._is_const(p.default, env)
                if why:
                    self.report("default-argument", p.default,
                                f"default of `{p.name.value}` must be a bounded constant (defaults are evaluated "
                                f"at import): {why}")

    def _check_function_decorator(self, dec: cst.Decorator) -> None:
        expr = dec.decorator
        if isinstance(expr, cst.Name) and expr.value in PLAIN_DECORATORS and expr.value not in self.imported:
            return
        target = expr.func if isinstance(expr, cst.Call) else expr
        origin = self._resolve(target)
        if origin in ("functools.lru_cache", "functools.cache"):
            if isinstance(expr, cst.Call):
                for a in expr.args:
                    if a.star or self._is_const(a.value):
                        self.report("decorator", a, "lru_cache arguments must be constants")
            return
        if (
            not isinstance(expr, cst.Call)
            and isinstance(expr, cst.Attribute)
            and isinstance(expr.value, cst.Name)
            and expr.attr.value in ("setter", "getter", "deleter")
            and self._class_stack
            and self._is_property(self._class_stack[-1], expr.value.value)
        ):
            return
        self.report("decorator", dec,
                    "decorator not allowed (allowed: staticmethod, classmethod, property, <prop>.setter, "
                    "functools.lru_cache, functools.cache); decorators run code at import")

    def _is_property(self, cls: cst.ClassDef, name: str) -> bool:
        for stmt in self._body(cls.body):
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
                for d in stmt.decorators:
                    if isinstance(d.decorator, cst.Name) and d.decorator.value == "property":
                        return True
        return False

    # -- statements -------------------------------------------------------------------------------------------
    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            full = cst.helpers.get_full_name_for_node(alias.name) or "?"
            if full == API_MODULE or full.startswith("recur"):
                self.report("import-not-allowed", alias,
                            f"`import {full}` is not allowed; use `from {API_MODULE} import Mechanism`")
            elif full not in ALLOWED_MODULES:
                self.report("import-not-allowed", alias,
                            f"module `{full}` is not in the allowlist ({', '.join(ALLOWED_MODULES)})")
            self._check_asname(alias)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if node.relative:
            self.report("import-not-allowed", node, "relative imports are not allowed")
            return False
        mod = cst.helpers.get_full_name_for_node(node.module) if node.module is not None else "?"
        mod = mod or "?"
        if mod == "__future__":
            return False
        if mod not in ALLOWED_MODULES and mod != API_MODULE:
            self.report("import-not-allowed", node,
                        f"module `{mod}` is not in the allowlist ({', '.join(ALLOWED_MODULES)}, {API_MODULE})")
            return False
        if isinstance(node.names, cst.ImportStar):
            self.report("import-star", node, f"`from {mod} import *` is not allowed; import names explicitly")
            return False
        allowed = module_members(mod)
        for alias in node.names:
            member = cst.helpers.get_full_name_for_node(alias.name) or "?"
            if member not in allowed:
                self.report("import-not-allowed", alias,
                            f"`{member}` may not be imported from `{mod}` (private, a module, or unsafe)")
            self._check_asname(alias)
        return False

    def _check_asname(self, alias: cst.ImportAlias) -> None:
        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
            n = alias.asname.name.value
            if is_dunder(n):
                self.report("dunder-name", alias.asname.name, f"`{n}` is a dunder name")

    def visit_Global(self, node: cst.Global) -> bool:
        self.report("global-statement", node, "`global` is not allowed (hooks must be pure)")
        return False

    def visit_Nonlocal(self, node: cst.Nonlocal) -> bool:
        self.report("global-statement", node, "`nonlocal` is not allowed (hooks must be pure)")
        return False

    def visit_Yield(self, node: cst.Yield) -> None:
        if self._func_stack and self._func_stack[-1][1]:
            self.report("generator-hook", node,
                        f"`yield` in hook `{self._func_stack[-1][0]}`: hooks must return a value, not a generator")

    def visit_Await(self, node: cst.Await) -> None:
        self.report("async", node, "`await` is not allowed")

    def visit_For(self, node: cst.For) -> None:
        self._mark(node.target, STORE)
        if node.asynchronous is not None:
            self.report("async", node, "`async for` is not allowed")

    def visit_With(self, node: cst.With) -> None:
        if node.asynchronous is not None:
            self.report("async", node, "`async with` is not allowed")

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.type is None:
            self.report("broad-except", node, "bare `except:` swallows KeyboardInterrupt/SystemExit; "
                                              "catch Exception or narrower")
            return
        types_ = node.type.elements if isinstance(node.type, cst.Tuple) else None
        exprs = [e.value for e in types_] if types_ is not None else [node.type]
        for e in exprs:
            name = e.value if isinstance(e, cst.Name) else (e.attr.value if isinstance(e, cst.Attribute) else None)
            if name in BROAD_EXCEPTIONS:
                self.report("broad-except", e, f"catching `{name}` is not allowed; catch Exception or narrower")

    def visit_ExceptStarHandler(self, node: cst.ExceptStarHandler) -> None:
        self.report("broad-except", node, "`except*` is not allowed")

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, (cst.SimpleString, cst.ConcatenatedString)):
            self._skip_strings.add(id(node.value))
            if isinstance(node.value, cst.ConcatenatedString):
                stack: list[cst.CSTNode] = [node.value]
                while stack:
                    n = stack.pop()
                    self._skip_strings.add(id(n))
                    if isinstance(n, cst.ConcatenatedString):
                        stack.extend([n.left, n.right])

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self._skip_names.add(id(node.keyword))
            if is_dunder(node.keyword.value):
                self.report("dunder-name", node.keyword, f"keyword `{node.keyword.value}` is a dunder name")

    # -- expressions ------------------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        f = node.func
        if isinstance(f, cst.Name) and f.value in ATTR_BUILTINS and f.value not in self.imported:
            self._ok_calls.add(id(f))
            args = node.args
            if any(a.star or a.keyword is not None for a in args) or len(args) < 2:
                self.report("dynamic-attribute", node, f"`{f.value}` must be called as {f.value}(obj, \"name\"...)")
                return
            name_node = args[1].value
            name = name_node.evaluated_value if isinstance(name_node, cst.SimpleString) else None
            if not isinstance(name, str):
                self.report("dynamic-attribute", name_node,
                            f"`{f.value}` needs a plain string literal name (string-built names are refused)")
            elif not _IDENT.match(name) or name.startswith("_") or name in FRAME_ATTRS or name in FORMAT_ATTRS:
                self.report("dynamic-attribute", name_node,
                            f"`{f.value}(..., {name!r})`: private, dunder, frame or format names are refused")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        attr = node.attr.value
        self._skip_names.add(id(node.attr))
        if isinstance(node.value, cst.Name):
            self._attr_bases.add(id(node.value))
        if is_dunder(attr):
            if not (attr == "__init__" and isinstance(node.value, cst.Call)
                    and isinstance(node.value.func, cst.Name) and node.value.func.value == "super"
                    and not node.value.args):
                self.report("dunder-attribute", node.attr, f"access to `.{attr}` is not allowed")
            return
        if attr in FRAME_ATTRS:
            self.report("frame-attribute", node.attr, f"access to `.{attr}` (frame/code internals) is not allowed")
            return
        if attr.startswith("_"):
            base = node.value
            ok = (isinstance(base, cst.Name) and base.value in ("self", "cls")) or (
                isinstance(base, cst.Call) and isinstance(base.func, cst.Name) and base.func.value == "super")
            if not ok:
                self.report("private-attribute", node.attr,
                            f"access to private `.{attr}` is only allowed on self/cls")
                return
        if attr in FORMAT_ATTRS:
            tmpl = _string_value(node.value)
            if tmpl is None:
                self.report("format-string", node,
                            f"`.{attr}` is only allowed on a string literal (format fields can read attributes)")
            else:
                why = _format_fields_problem(tmpl)
                if why:
                    self.report("format-string", node, why)
        if isinstance(node.value, cst.Name) and node.value.value in self.module_aliases:
            mod = self.module_aliases[node.value.value]
            if attr not in module_members(mod):
                self.report("module-attribute", node.attr,
                            f"`{node.value.value}.{attr}` is not an allowed member of `{mod}` "
                            "(private, a module, or unsafe)")
        ctx = self._ctx(node)
        if ctx != LOAD:
            root = self._root_name(node)
            if root is not None and (root.value in self.module_aliases or root.value in self.imported):
                self.report("module-attribute", node, f"mutating `{root.value}` (an imported object) is not allowed")

    def visit_Subscript(self, node: cst.Subscript) -> None:
        ctx = self._ctx(node)
        if ctx != LOAD:
            root = self._root_name(node)
            if root is not None and (root.value in self.module_aliases or root.value in self.imported):
                self.report("module-attribute", node, f"mutating `{root.value}` (an imported object) is not allowed")

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._skip_names:
            return
        ctx = self._ctx(node)
        name = node.value
        if name in FORBIDDEN_BUILTINS:
            if ctx == LOAD or is_dunder(name):
                self.report("forbidden-builtin", node, f"`{name}` is not allowed")
            return
        if is_dunder(name):
            at_top = not self._func_stack
            if not (ctx == STORE and at_top and name in ALLOWED_DUNDER_STORES):
                self.report("dunder-name", node, f"the name `{name}` is not allowed")
            return
        if name in ATTR_BUILTINS and ctx == LOAD and id(node) not in self._ok_calls \
                and name not in self.imported:
            self.report("dynamic-attribute", node, f"`{name}` may only be called directly with a literal name")
            return
        if name in self.module_aliases and ctx == LOAD and id(node) not in self._attr_bases:
            self.report("module-alias", node,
                        f"module `{name}` may only be used as `{name}.member` (a module object may not escape)")

    def _check_string(self, node: cst.CSTNode, value: str | None) -> None:
        if value is None or id(node) in self._skip_strings:
            return
        m = _DUNDER_IN.search(value)
        if m:
            self.report("dunder-string", node, f"string literal contains the dunder name `{m.group(0)}`")

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if id(node) in self._skip_strings:
            return
        self._check_string(node, _string_value(node))

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> None:
        if id(node) in self._skip_strings:
            return
        v = _string_value(node)
        if v is not None and _DUNDER_IN.search(v):
            # report once for the whole literal; parts are checked on their own too (may duplicate; deduped)
            self._check_string(node, v)

    def visit_FormattedStringText(self, node: cst.FormattedStringText) -> None:
        self._check_string(node, node.value)


def _format_fields_problem(template: str, depth: int = 0) -> str | None:
    if depth > 2:
        return "format template nested too deeply"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"invalid format template: {exc}"
    for _, field, spec, _conv in parsed:
        if field is None:
            continue
        if "." in field or "[" in field:
            return f"format field `{{{field}}}` reads attributes or items; use an f-string instead"
        if spec and "{" in spec:
            why = _format_fields_problem(spec, depth + 1)
            if why:
                return why
    return None


def _ast_depth(tree: ast.AST) -> int:
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > MAX_DEPTH:
                return deepest
        for child in ast.iter_child_nodes(node):
            stack.append((child, d + 1))
    return deepest


def check_source(source: str, max_bytes: int = 20000) -> list[Violation]:
    """All policy violations of a mechanism module, sorted by position; [] means the module passes."""
    if not isinstance(source, str):
        raise TypeError("check_source expects the module source as str")
    size = len(source.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return [Violation("size-cap", 1, 1, f"source is {size} bytes; the cap is {max_bytes}")]
    try:
        tree = ast.parse(source, filename="<mechanism>", feature_version=(3, 11))
    except SyntaxError as exc:
        return [Violation("syntax-error", max(exc.lineno or 1, 1), max(exc.offset or 1, 1),
                          f"{type(exc).__name__}: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Violation("syntax-error", 1, 1, f"{type(exc).__name__}: {exc}")]
    depth = _ast_depth(tree)
    if depth > MAX_DEPTH:
        return [Violation("too-complex", 1, 1, f"syntax tree nesting exceeds {MAX_DEPTH}")]
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return [Violation("syntax-error", max(exc.raw_line, 1), max(exc.raw_column + 1, 1), exc.message)]
    checker = _Checker()
    checker.collect_imports(tree)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    try:
        wrapper.module.visit(checker)
        if not checker.found:
            return []
        # PositionProvider is a full code-generation pass: only paid when there is something to report
        positions = wrapper.resolve(PositionProvider)
    except RecursionError:
        return [Violation("too-complex", 1, 1, "syntax tree too deep to check")]
    seen: set[tuple[str, int, int]] = set()
    out: list[Violation] = []
    for v in sorted(checker.violations(positions), key=lambda v: (v.line, v.column, v.rule, v.message)):
        key = (v.rule, v.line, v.column)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def format_violations(violations: Iterable[Violation], filename: str = "<mechanism>") -> str:
    """`file:line:col: [rule] message` lines (what an LLM is shown when its module is refused)."""
    return "\n".join(f"{filename}:{v}" for v in violations)


# ---------------------------------------------------------------------------------------------------------------
# active/L<k>.toml

_TOML_POS = re.compile(r"at line (\d+), column (\d+)")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _key_pos(text: str, key: str) -> tuple[int, int]:
    m = re.search(rf"^[ \t]*(\[\[?[ \t]*)?[\"']?{re.escape(key)}\b", text, re.M)
    return _line_col(text, m.start() + len(m.group(0)) - len(key)) if m else (1, 1)


def _slug_positions(text: str, slug: str) -> list[tuple[int, int]]:
    start = 0
    m = re.search(r"^[ \t]*mechanisms[ \t]*=", text, re.M)
    if m:
        start = m.end()
    return [_line_col(text, x.start()) for x in re.finditer(rf"([\"']){re.escape(slug)}\1", text)
            if x.start() >= start]


def _params_pos(text: str, slug: str) -> tuple[int, int]:
    m = re.search(rf"^[ \t]*\[[ \t]*params[ \t]*\.[ \t]*[\"']?{re.escape(slug)}[\"']?[ \t]*\]", text, re.M)
    if m:
        return _line_col(text, m.start() + len(m.group(0)) - len(m.group(0).lstrip()))
    m = re.search(rf"\b{re.escape(slug)}\b", text[text.find("params"):] if "params" in text else "")
    if m:
        return _line_col(text, text.find("params") + m.start())
    return _key_pos(text, "params")


def _json_like(v: Any, depth: int = 0) -> bool:
    if depth > 16:
        return False
    if isinstance(v, (str, int, float, bool)):
        return True
    if isinstance(v, list):
        return all(_json_like(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_like(x, depth + 1) for k, x in v.items())
    return False  # datetimes, dates, times


def check_toml(text: str, known_mechanisms: set[str]) -> list[Violation]:
    """Validate an ``active/L<k>.toml``: ``mechanisms = ["slug", ...]`` (known, no duplicates, in hook order)
    plus optional ``[params.<slug>]`` tables of JSON-like literals for listed slugs."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        return [Violation("toml-syntax", max(line, 1), max(col, 1), str(exc))]
    out: list[Violation] = []
    for key in data:
        if key not in ("mechanisms", "params"):
            line, col = _key_pos(text, key)
            out.append(Violation("toml-shape", line, col,
                                 f"unknown key `{key}` (expected `mechanisms` and optional `params`)"))
    mechs = data.get("mechanisms")
    listed: list[str] = []
    if mechs is None:
        out.append(Violation("toml-shape", 1, 1, "missing `mechanisms = [\"slug\", ...]`"))
    elif not isinstance(mechs, list):
        line, col = _key_pos(text, "mechanisms")
        out.append(Violation("toml-shape", line, col, "`mechanisms` must be an array of slugs"))
    else:
        seen: dict[str, int] = {}
        for item in mechs:
            if not isinstance(item, str):
                line, col = _key_pos(text, "mechanisms")
                out.append(Violation("toml-shape", line, col, f"`mechanisms` entries must be strings, got {item!r}"))
                continue
            n = seen.get(item, 0)
            seen[item] = n + 1
            positions = _slug_positions(text, item)
            line, col = positions[n] if n < len(positions) else _key_pos(text, "mechanisms")
            if n >= 1:
                out.append(Violation("duplicate-mechanism", line, col, f"`{item}` is listed more than once"))
                continue
            listed.append(item)
            if item not in known_mechanisms:
                out.append(Violation("unknown-mechanism", line, col, f"`{item}` is not a known mechanism"))
    params = data.get("params")
    if params is not None:
        if not isinstance(params, dict):
            line, col = _key_pos(text, "params")
            out.append(Violation("toml-shape", line, col, "`params` must be a table of `[params.<slug>]` tables"))
        else:
            for slug, table in params.items():
                line, col = _params_pos(text, slug)
                if slug not in listed:
                    out.append(Violation("toml-params", line, col,
                                         f"`[params.{slug}]` is for a mechanism not listed in `mechanisms`"))
                if not isinstance(table, dict):
                    out.append(Violation("toml-shape", line, col, f"`params.{slug}` must be a table"))
                elif not _json_like(table):
                    out.append(Violation("toml-params", line, col,
                                         f"`params.{slug}` values must be strings, numbers, booleans, arrays or "
                                         "tables (no dates/times)"))
    return sorted(out, key=lambda v: (v.line, v.column, v.rule))
