"""Sandbox (core/sandbox.py): hooks run in a warm worker process; overruns are killed, misbehaviour comes back
as an error result, the next call works again, and the caller's objects are never touched."""
from __future__ import annotations

import copy
import math
import os
import re
import time
from pathlib import Path

import pytest

from recur.core.sandbox import JSON_ARGS, MiB, Sandbox, SandboxResult

HERE = Path(__file__).parent
HOSTILE = HERE / "mechanisms" / "hostile"
BENIGN = sorted((HERE / "mechanisms" / "benign").glob("*.py"))
RUNTIME_HOSTILE = sorted(p for p in HOSTILE.glob("*.py") if p.read_text().startswith("# expect: sandbox"))

TIMEOUT = 0.75
SLACK = 1.0  # kill + reap + scheduling noise on a loaded 2-core machine

MECH = "from recur.core.mechanism_api import Mechanism\n\n\n"

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "depth": {"type": "int", "low": 1, "high": 8},
    "act": {"type": "choice", "choices": ["relu", "gelu"]},
}
PROPOSALS = [
    {"kind": "lr", "payload": {"params": {"lr": 0.01}}, "rationale": "smaller steps"},
    {"kind": "depth", "payload": {"params": {"depth": 6}}, "rationale": "deeper"},
    {"kind": "act", "payload": {"params": {"act": "gelu"}}, "rationale": "smoother"},
]
HISTORY = [
    {"id": f"t{i}", "level": 1, "parent": None, "kind": k, "payload": {"params": p}, "metric": m,
     "cost": 1.0, "status": s, "seed": i, "kept": kept}
    for i, (k, p, m, s, kept) in enumerate([
        ("lr", {"lr": 0.003}, 1.52, "ok", True),
        ("depth", {"depth": 5}, 1.55, "ok", False),
        ("lr", {"lr": 0.03}, float("nan"), "nan", False),
        ("act", {"act": "gelu"}, 1.49, "ok", True),
        ("depth", {"depth": 7}, None, "crash", False),
        ("lr", {"lr": 0.001}, 1.50, "ok", False),
    ])
]
CONTEXT = {"level": 1, "step": 6, "space": SPACE, "frozen": [], "guidance": [],
           "incumbent": {"lr": 0.003, "depth": 4, "act": "gelu"}, "best_metric": 1.49, "maximize": False,
           "proposals": PROPOSALS, "history": HISTORY}
OUTCOME = {"status": "ok", "metric": 1.51, "best_metric": 1.49, "incumbent_metric": 1.49, "default_keep": False,
           "maximize": False, "step": 6}
ARGS = {
    "guide": [CONTEXT],
    "propose": [CONTEXT],
    "filter": [PROPOSALS, HISTORY],
    "select": [PROPOSALS, HISTORY],
    "accept": [OUTCOME, HISTORY],
}
PICK_FIRST = MECH + 'class First(Mechanism):\n    """Pick the first."""\n\n' \
    "    def select(self, proposals, history, rng):\n        return proposals[0]\n"


def hook_of(path: Path) -> str:
    m = re.search(r"^# call: (\w+)$", path.read_text(), re.M)
    return m.group(1) if m else "select"


def defined_hooks(source: str) -> list[str]:
    return [h for h in JSON_ARGS if re.search(rf"^    def {h}\(self", source, re.M)]


@pytest.fixture(scope="module")
def hostile_sandbox():
    modules = {p.stem: p.read_text() for p in RUNTIME_HOSTILE}
    modules["first"] = PICK_FIRST
    with Sandbox(modules, call_timeout_s=TIMEOUT, memory_bytes=256 * MiB, max_result_bytes=8 * MiB) as sb:
        yield sb


def test_arity_table_matches_the_api() -> None:
    assert JSON_ARGS == {"guide": 1, "propose": 1, "filter": 2, "select": 2, "accept": 2}


@pytest.mark.parametrize("path", RUNTIME_HOSTILE, ids=lambda p: p.stem)
def test_runtime_hostile_is_stopped_and_the_sandbox_recovers(hostile_sandbox: Sandbox, path: Path) -> None:
    hook = hook_of(path)
    t0 = time.perf_counter()
    r = hostile_sandbox.call(path.stem, hook, copy.deepcopy(ARGS[hook]), seed=1)
    elapsed = time.perf_counter() - t0
    assert isinstance(r, SandboxResult)
    assert not r.ok and r.value is None and r.error, r
    assert elapsed <= TIMEOUT + SLACK, (elapsed, r)
    if r.killed:
        assert "timeout" in r.error or "died" in r.error
    after = hostile_sandbox.call("first", "select", copy.deepcopy(ARGS["select"]), seed=2)
    assert after.ok and after.value == PROPOSALS[0], after


def test_specific_runtime_failures(hostile_sandbox: Sandbox) -> None:
    sb = hostile_sandbox
    loop = sb.call("rt_infinite_loop", "select", ARGS["select"], 0)
    assert loop.killed and "timeout" in loop.error
    assert TIMEOUT <= loop.seconds <= TIMEOUT + SLACK
    bomb = sb.call("rt_memory_bomb", "select", ARGS["select"], 0)
    assert not bomb.killed and bomb.error.startswith("MemoryError")
    rec = sb.call("rt_deep_recursion", "select", ARGS["select"], 0)
    assert not rec.killed and rec.error.startswith("RecursionError") and "(line" in rec.error
    nonjson = sb.call("rt_non_json_set", "select", ARGS["select"], 0)
    assert not nonjson.killed and "non-JSON" in nonjson.error and "set" in nonjson.error
    assert "non-JSON" in sb.call("rt_returns_iterator", "select", ARGS["select"], 0).error
    assert sb.call("rt_raises_systemexit", "select", ARGS["select"], 0).error.startswith("SystemExit")
    big = sb.call("rt_huge_string", "select", ARGS["select"], 0)
    assert "too large" in big.error or big.error.startswith("MemoryError")


@pytest.mark.parametrize("path", BENIGN, ids=lambda p: p.stem)
def test_benign_hooks_run_in_the_sandbox(path: Path) -> None:
    source = path.read_text()
    hooks = defined_hooks(source)
    assert hooks, path.name
    with Sandbox({path.stem: source}, call_timeout_s=5.0) as sb:
        for hook in hooks:
            args = copy.deepcopy(ARGS[hook])
            r = sb.call(path.stem, hook, args, seed=3)
            assert r.ok, (hook, r.error)
            assert not r.killed and r.error is None
            again = sb.call(path.stem, hook, copy.deepcopy(ARGS[hook]), seed=3)
            assert again.value == r.value  # deterministic for a fixed seed
            if hook == "select":
                assert r.value in PROPOSALS
            elif hook == "filter":
                assert all(p in PROPOSALS for p in r.value)
            elif hook == "accept":
                assert isinstance(r.value, bool)
            elif hook == "guide":
                assert isinstance(r.value, dict) and isinstance(r.value.get("guidance", []), list)
            elif hook == "propose":
                assert isinstance(r.value, list) and all(isinstance(p, dict) for p in r.value)


def test_benign_value_and_params_override() -> None:
    source = (HERE / "mechanisms" / "benign" / "tabu_kinds.py").read_text()
    history = [{"kind": "lr"}, {"kind": "act"}]
    with Sandbox({"tabu": source}, call_timeout_s=2.0) as sb:
        r = sb.call("tabu", "filter", [PROPOSALS, history], seed=0)
        assert r.ok and r.value == [PROPOSALS[1]] and r.seconds > 0 and not r.killed
    with Sandbox({"tabu": source}, params={"tabu": {"tenure": 1}}) as sb:
        assert sb.call("tabu", "filter", [PROPOSALS, history], seed=0).value == PROPOSALS[:2]


def test_args_are_not_mutated_in_the_parent() -> None:
    mutator = MECH + 'class Mut(Mechanism):\n    """Mutates everything it is given."""\n\n' \
        "    def filter(self, proposals, history):\n        proposals[0]['kind'] = 'changed'\n" \
        "        history.clear()\n        proposals.append({'kind': 'new'})\n        return proposals[:1]\n"
    proposals, history = copy.deepcopy(PROPOSALS), copy.deepcopy(HISTORY)
    before = copy.deepcopy((proposals, history))
    with Sandbox({"mut": mutator}) as sb:
        r = sb.call("mut", "filter", [proposals, history], seed=0)
    assert r.ok and r.value[0]["kind"] == "changed"
    assert repr((proposals, history)) == repr(before)


def test_nan_travels_as_null_and_returns_must_be_json() -> None:
    echo = MECH + 'class Echo(Mechanism):\n    """Echo."""\n\n' \
        "    def guide(self, context):\n        return context\n\n" \
        "    def accept(self, outcome, history, rng):\n        return {1: 'int key'}\n\n" \
        "    def select(self, proposals, history, rng):\n        return float('nan')\n\n" \
        "    def filter(self, proposals, history):\n        return (proposals[0],)\n"
    with Sandbox({"echo": echo}) as sb:
        r = sb.call("echo", "guide", [{"m": float("nan"), "i": -math.inf, "ok": [1.5]}], seed=0)
        assert r.ok and r.value == {"m": None, "i": None, "ok": [1.5]}
        bad = sb.call("echo", "accept", [OUTCOME, []], seed=0)
        assert not bad.ok and "key" in bad.error
        assert sb.call("echo", "select", [PROPOSALS, []], seed=0).value is None
        assert sb.call("echo", "filter", [PROPOSALS, []], seed=0).value == [PROPOSALS[0]]  # tuple -> list


def test_state_does_not_survive_between_calls_and_seeds_are_deterministic() -> None:
    counter = MECH + 'class Count(Mechanism):\n    """Tries to keep state."""\n\n    CALLS = [0]\n\n' \
        "    def select(self, proposals, history, rng):\n        self.CALLS[0] += 1\n" \
        "        return {'calls': self.CALLS[0], 'draw': rng.random(), 'global': random.random()}\n"
    counter = "import random\n" + counter
    with Sandbox({"count": counter}) as sb:
        first = sb.call("count", "select", [PROPOSALS, []], seed=11)
        second = sb.call("count", "select", [PROPOSALS, []], seed=11)
        assert first.ok and first.value == second.value and first.value["calls"] == 1
        sb.restart()
        assert sb.call("count", "select", [PROPOSALS, []], seed=11).value == first.value
        assert sb.call("count", "select", [PROPOSALS, []], seed=12).value != first.value


def test_containment_refuses_files_processes_and_imports() -> None:
    # modules that never went through the static policy: the worker still refuses these
    sneaky = "import typing\n" + MECH + 'class Sneaky(Mechanism):\n    """Escapes."""\n\n' \
        "    def guide(self, context):\n        return typing.sys.modules['os'].system('touch /tmp/recur_pwned')\n\n" \
        "    def filter(self, proposals, history):\n        return open('/etc/passwd').read()\n\n" \
        "    def select(self, proposals, history, rng):\n        import socket\n        return proposals[0]\n\n" \
        "    def accept(self, outcome, history, rng):\n        print('x' * 100000)\n        return True\n"
    with Sandbox({"sneaky": sneaky}) as sb:
        g = sb.call("sneaky", "guide", [CONTEXT], seed=0)
        assert not g.ok and "PermissionError" in g.error
        f = sb.call("sneaky", "filter", [PROPOSALS, []], seed=0)
        assert not f.ok and "open" in f.error
        s = sb.call("sneaky", "select", [PROPOSALS, []], seed=0)
        assert not s.ok and "ImportError" in s.error
        a = sb.call("sneaky", "accept", [OUTCOME, []], seed=0)  # printing cannot corrupt the protocol
        assert a.ok and a.value is True
    assert not os.path.exists("/tmp/recur_pwned")


def test_compile_errors_and_missing_class_are_results() -> None:
    with Sandbox({"broken": "def f(:\n", "empty": "x = 1\n", "first": PICK_FIRST}) as sb:
        assert "broken" in sb.load_errors
        r = sb.call("broken", "select", [PROPOSALS, []], seed=0)
        assert not r.ok and "compile" in r.error
        r = sb.call("empty", "select", [PROPOSALS, []], seed=0)
        assert not r.ok and "Mechanism subclass" in r.error
        assert sb.call("first", "select", [PROPOSALS, []], seed=0).ok


def test_programming_errors_raise() -> None:
    sb = Sandbox({"first": PICK_FIRST})
    try:
        with pytest.raises(KeyError):
            sb.call("nope", "select", [PROPOSALS, []], 0)
        with pytest.raises(ValueError):
            sb.call("first", "choose", [PROPOSALS, []], 0)
        with pytest.raises(ValueError):
            sb.call("first", "select", [PROPOSALS, [], "rng"], 0)
        with pytest.raises(TypeError):
            sb.call("first", "select", [PROPOSALS, [object()]], 0)
        with pytest.raises(TypeError):
            sb.call("first", "select", [PROPOSALS, []], "7")  # type: ignore[arg-type]
    finally:
        sb.close()
    with pytest.raises(RuntimeError):
        sb.call("first", "select", [PROPOSALS, []], 0)
    with pytest.raises(TypeError):
        Sandbox({"first": b"bytes"})  # type: ignore[dict-item]


def test_kill_restarts_a_fresh_worker_and_close_reaps_it() -> None:
    loop = MECH + 'class Loop(Mechanism):\n    """Spins."""\n\n' \
        "    def guide(self, context):\n        while True:\n            pass\n"
    with Sandbox({"loop": loop, "first": PICK_FIRST}, call_timeout_s=0.3) as sb:
        pid = sb.pid
        assert pid is not None and sb.starts == 1
        r = sb.call("loop", "guide", [CONTEXT], seed=0)
        assert r.killed and not r.ok and sb.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert sb.call("first", "select", [PROPOSALS, []], seed=0).ok
        assert sb.starts == 2 and sb.pid not in (None, pid)
        last = sb.pid
    assert sb.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(last, 0)


def test_cpu_rlimit_kills_a_worker_and_it_is_replaced() -> None:
    spin = MECH + 'class Spin(Mechanism):\n    """Spins."""\n\n' \
        "    def guide(self, context):\n        while True:\n            pass\n"
    with Sandbox({"spin": spin, "first": PICK_FIRST}, call_timeout_s=10.0, cpu_seconds=1) as sb:
        t0 = time.perf_counter()
        r = sb.call("spin", "guide", [CONTEXT], seed=0)
        assert r.killed and "died" in r.error and "SIGXCPU" in r.error, r
        assert time.perf_counter() - t0 < 9.5  # 1 s of CPU; wall time stretches on a loaded machine
        assert sb.call("first", "select", [PROPOSALS, []], seed=0).ok


def test_memory_rlimit() -> None:
    hog = MECH + 'class Hog(Mechanism):\n    """Allocates 300 MB."""\n\n' \
        "    def guide(self, context):\n        block = bytearray(300 * 1024 * 1024)\n        return context\n"
    with Sandbox({"hog": hog}, memory_bytes=200 * MiB) as sb:
        r = sb.call("hog", "guide", [{}], seed=0)
        assert not r.ok and r.error.startswith("MemoryError") and not r.killed
    with Sandbox({"hog": hog}, memory_bytes=1024 * MiB) as sb:
        assert sb.call("hog", "guide", [{}], seed=0).ok


def test_property_caller_shape() -> None:
    with Sandbox({"first": PICK_FIRST}) as sb:
        ok, value, error, seconds = sb.caller("first")("select", [PROPOSALS, []], 5)
        assert ok and value == PROPOSALS[0] and error is None and seconds > 0
