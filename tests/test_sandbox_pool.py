"""SandboxCache: one warm worker per distinct module set, shared by leases, never evicted while leased."""
from __future__ import annotations

import os

import pytest

from recur.core.hooks import ActiveMechanism
from recur.core.sandbox_pool import SandboxCache

PICK_LAST = """from recur.core.mechanism_api import Mechanism


class PickLast(Mechanism):
    def select(self, proposals, history, rng):
        return proposals[-1]
"""
PICK_FIRST = PICK_LAST.replace("PickLast", "PickFirst").replace("proposals[-1]", "proposals[0]")
SLEEPY = PICK_LAST.replace("return proposals[-1]", "while True:\n            pass")


def mech(name: str, source: str) -> ActiveMechanism:
    return ActiveMechanism(name, source, ["select"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); its status says it is gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_same_modules_get_the_same_warm_worker_and_other_modules_another() -> None:
    cache = SandboxCache()
    try:
        a = cache([mech("last", PICK_LAST)])
        assert a.call("last", "select", [[1, 2, 3], []], 0).value == 3
        pid = a.sandbox.pid
        a.close()
        again = cache([mech("last", PICK_LAST)])
        assert again.sandbox.pid == pid and (cache.started, cache.reused) == (1, 1)
        other = cache([mech("last", PICK_FIRST)])  # same name, other code: never the same worker
        assert other.sandbox.pid != pid and other.call("last", "select", [[1, 2, 3], []], 0).value == 1
        assert again.call("last", "select", [[1, 2, 3], []], 0).value == 3
        again.close()
        with pytest.raises(RuntimeError):
            again.call("last", "select", [[1], []], 0)  # a returned lease cannot be used
    finally:
        cache.close()


def test_only_idle_workers_are_evicted_and_close_stops_them_all() -> None:
    cache = SandboxCache(capacity=2)
    held = cache([mech("last", PICK_LAST)])
    pids = [held.sandbox.pid]
    for i in range(3):
        lease = cache([mech(f"m{i}", PICK_FIRST)])
        pids.append(lease.sandbox.pid)
        lease.close()
    assert held.call("last", "select", [[1, 2], []], 0).value == 2  # leased: kept however full the cache is
    assert [alive(p) for p in pids] == [True, False, False, True]  # the oldest idle ones beyond capacity are stopped
    cache.close()
    assert not any(alive(p) for p in pids)
    with pytest.raises(RuntimeError):
        cache([mech("last", PICK_LAST)])


def test_a_worker_killed_by_a_hook_is_replaced_for_the_next_lease() -> None:
    cache = SandboxCache(call_timeout_s=0.5)
    try:
        lease = cache([mech("sleepy", SLEEPY), mech("last", PICK_LAST)])
        r = lease.call("sleepy", "select", [[1, 2], []], 0)
        assert not r.ok and r.killed
        lease.close()
        again = cache([mech("sleepy", SLEEPY), mech("last", PICK_LAST)])
        assert again.call("last", "select", [[1, 2], []], 0).value == 2
    finally:
        cache.close()
