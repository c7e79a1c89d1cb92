"""Static policy (mechanism_store/policy.py): the hostile corpus is refused by the rule each file names, the
benign corpus and the built-in mechanism families pass, and active/L<k>.toml files are validated."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from recur.mechanism_store.policy import RULES, Violation, check_source, check_toml

HERE = Path(__file__).parent
HOSTILE = sorted((HERE / "mechanisms" / "hostile").glob("*.py"))
BENIGN = sorted((HERE / "mechanisms" / "benign").glob("*.py"))
BUILTIN = sorted(p for p in (HERE.parent / "mechanism_store" / "builtin").glob("*.py") if p.name != "__init__.py")


def expected_rule(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    m = re.fullmatch(r"# expect: (\S+)", first)
    assert m, f"{path.name}: first line must be '# expect: <rule-id>'"
    return m.group(1)


STATIC_HOSTILE = [p for p in HOSTILE if expected_rule(p) != "sandbox"]
RUNTIME_HOSTILE = [p for p in HOSTILE if expected_rule(p) == "sandbox"]

MECH = "from recur.core.mechanism_api import Mechanism\n\n\n"


def select_module(body: str, head: str = "") -> str:
    """A well-formed mechanism whose select hook contains ``body`` (indented 8)."""
    lines = "\n".join("        " + ln for ln in body.strip("\n").splitlines())
    return (f"{head}{MECH}class M(Mechanism):\n    \"\"\"Doc.\"\"\"\n\n"
            f"    def select(self, proposals, history, rng):\n{lines}\n        return proposals[0]\n")


def rules(source: str) -> set[str]:
    return {v.rule for v in check_source(source)}


# ------------------------------------------------------------------------------------------------ corpus


def test_corpus_sizes() -> None:
    assert len(STATIC_HOSTILE) >= 45
    assert len(RUNTIME_HOSTILE) >= 5
    assert len(BENIGN) >= 12


@pytest.mark.parametrize("path", STATIC_HOSTILE, ids=lambda p: p.stem)
def test_hostile_module_is_refused_by_its_rule(path: Path) -> None:
    source = path.read_text()
    expected = expected_rule(path)
    assert expected in RULES, f"unknown rule id {expected!r} in {path.name}"
    violations = check_source(source)
    found = {v.rule for v in violations}
    assert expected in found, f"{path.name}: expected {expected}, got {[str(v) for v in violations]}"
    n_lines = source.count("\n") + 1
    for v in violations:
        assert v.rule in RULES
        assert 1 <= v.line <= n_lines and v.column >= 1, v
        assert v.message


@pytest.mark.parametrize("path", RUNTIME_HOSTILE, ids=lambda p: p.stem)
def test_runtime_hostile_module_passes_the_static_gate(path: Path) -> None:
    assert check_source(path.read_text()) == []


@pytest.mark.parametrize("path", BENIGN, ids=lambda p: p.stem)
def test_benign_module_passes(path: Path) -> None:
    assert check_source(path.read_text()) == []


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.stem)
def test_builtin_families_pass(path: Path) -> None:
    assert check_source(path.read_text()) == []


# ------------------------------------------------------------------------------------------------ API


def test_violation_is_frozen_and_positions_are_one_based() -> None:
    src = select_module("k = proposals.__class__")
    [v] = check_source(src)
    lines = src.splitlines()
    row = next(i for i, ln in enumerate(lines) if "__class__" in ln)
    assert (v.rule, v.line, v.column) == ("dunder-attribute", row + 1, lines[row].index("__class__") + 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.rule = "x"  # type: ignore[misc]
    assert str(v).startswith(f"{row + 1}:")


def test_violations_are_sorted_and_deduplicated() -> None:
    src = select_module("a = eval\nb = exec\nc = x.__dict__")
    vs = check_source(src)
    assert vs == sorted(vs, key=lambda v: (v.line, v.column, v.rule))
    assert len({(v.rule, v.line, v.column) for v in vs}) == len(vs)
    assert [v.rule for v in vs] == ["forbidden-builtin", "forbidden-builtin", "dunder-attribute"]


def test_size_cap_and_syntax_error_positions() -> None:
    src = select_module("x = 1")
    assert check_source(src, max_bytes=len(src)) == []
    assert [v.rule for v in check_source(src, max_bytes=len(src) - 1)] == ["size-cap"]
    [v] = check_source("x = 1\ndef f(:\n    pass\n")
    assert v.rule == "syntax-error" and v.line == 2 and v.column >= 1
    [v] = check_source("x = 1\0\n")
    assert v.rule == "syntax-error"
    with pytest.raises(TypeError):
        check_source(b"x = 1")  # type: ignore[arg-type]


def test_allowed_constructs() -> None:
    ok = [
        'n = getattr(rng, "random")()',
        'ok = hasattr(proposals, "append")',
        'import_like = "from math import sqrt"',
        "t = math.sqrt(2) + math.pi",
        "fmt = '{:.3f} {}'.format(1.0, 2)",
        "text = f'{proposals[0]!r:>10}'",
        "s = sorted(proposals, key=lambda p: str(p))",
        "gen = list(x for x in proposals)",
        "try:\n    y = 1 / 0\nexcept (ZeroDivisionError, ValueError):\n    y = 0",
        "try:\n    y = 1\nexcept Exception:\n    y = 0",
    ]
    for body in ok:
        src = select_module(body, head="import math\n")
        assert check_source(src) == [], (body, check_source(src))


def test_init_and_super_init_are_allowed_but_other_dunders_are_not() -> None:
    src = (MECH + 'class M(Mechanism):\n    """Doc."""\n\n    def __init__(self, k=3):\n'
           "        super().__init__()\n        self.k = k\n\n    def __eq__(self, other):\n        return False\n\n"
           "    def select(self, proposals, history, rng):\n        return proposals[0]\n")
    assert check_source(src) == []
    assert "dunder-name" in rules(src.replace("__eq__", "__getattribute__"))
    assert "dunder-name" in rules(src.replace("__eq__", "__del__"))
    assert "dunder-attribute" in rules(src.replace("super().__init__()", "object.__init__(self)"))


def test_module_constants_are_bounded() -> None:
    head = 'A = 3\nB = A * 2 + 1\nC = ("x", -1.5, None, True, [1, 2], {"k": {1, 2}})\nD = float("inf")\nE = "-" * 40\n'
    assert check_source(select_module("x = 1", head=head)) == []
    for bad in ("A = [0] * 10 ** 6\n", "A = 2 ** 100000\n", "A = 1 / 0\n", "A = len('abc')\n", "A = undefined\n",
                "A = [i for i in range(3)]\n", "A, B = 1, 2\n", "x.y = 1\n"):
        assert "module-level-code" in rules(select_module("x = 1", head=bad)), bad


def test_hook_arity_and_generators() -> None:
    base = MECH + 'class M(Mechanism):\n    """Doc."""\n\n'
    good = {
        "guide": "    def guide(self, context):\n        return context\n",
        "propose": "    def propose(self, context, rng):\n        return []\n",
        "filter": "    def filter(self, proposals, history):\n        return proposals\n",
        "select": "    def select(self, proposals, history, rng):\n        return proposals[0]\n",
        "accept": "    def accept(self, outcome, history, rng):\n        return True\n",
    }
    assert check_source(base + "\n".join(good.values())) == []
    assert "hook-arity" in rules(base + "    def guide(self, context, extra):\n        return context\n")
    assert "hook-arity" in rules(base + "    def accept(self, outcome, history, rng, *, k=1):\n        return True\n")
    assert "hook-arity" in rules(base + "    guide = None\n" + good["select"])
    # a generator helper is fine; a generator hook is not
    helper = "    def pairs(self, xs):\n        yield from zip(xs, xs)\n"
    assert check_source(base + helper + good["select"]) == []
    assert "generator-hook" in rules(base + "    def filter(self, proposals, history):\n        yield from proposals\n")


def test_toml_ok() -> None:
    text = 'mechanisms = ["tabu", "ucb"]\n\n[params.tabu]\ntenure = 5\nkinds = ["a", "b"]\n\n[params.ucb]\nc = 1.5\n'
    assert check_toml(text, {"tabu", "ucb", "other"}) == []
    assert check_toml("mechanisms = []\n", set()) == []


def test_toml_errors_name_rule_line_and_column() -> None:
    known = {"tabu", "ucb"}
    [v] = check_toml('mechanisms = ["tabu",\n  "nope"]\n', known)
    assert (v.rule, v.line, v.column) == ("unknown-mechanism", 2, 3)
    [v] = check_toml('mechanisms = ["tabu", "ucb", "tabu"]\n', known)
    assert (v.rule, v.line, v.column) == ("duplicate-mechanism", 1, 30)
    [v] = check_toml('mechanisms = ["tabu"]\n\n[params.ucb]\nc = 1\n', known)
    assert (v.rule, v.line) == ("toml-params", 3)
    [v] = check_toml('mechanisms = ["tabu"]\n[params.tabu]\nwhen = 1979-05-27\n', known)
    assert (v.rule, v.line) == ("toml-params", 2)
    [v] = check_toml('mechanisms = ["tabu"\n', known)
    assert v.rule == "toml-syntax" and v.line >= 1 and v.column >= 1
    assert [v.rule for v in check_toml('mechanisms = "tabu"\n', known)] == ["toml-shape"]
    assert [v.rule for v in check_toml('mechanisms = [1]\n', known)] == ["toml-shape"]
    assert [v.rule for v in check_toml("", known)] == ["toml-shape"]
    [v] = check_toml('mechanisms = ["tabu"]\nextra = 1\n', known)
    assert (v.rule, v.line, v.column) == ("toml-shape", 2, 1)
    for v in check_toml('x = 1\nmechanisms = ["a", "a"]\n[params]\nb = 2\n', known):
        assert isinstance(v, Violation) and v.line >= 1 and v.column >= 1
