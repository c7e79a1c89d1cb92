"""SandboxCache: warm sandbox workers kept for the run, one per distinct set of mechanism modules.

A run asks for a sandbox each time it builds a policy: every level-1 window, both arms of every race block,
every screen and every dry run. Most ask for a set of modules already asked for (the incumbents, or the
incumbents plus the candidate under race), and starting a worker costs a Python start-up (about 60 ms of CPU,
a few dozen times per synthetic run). The cache hands the same warm worker back for the same modules.

Sharing is invisible to the hooks: every call runs in a fresh module namespace with its arguments decoded fresh
and its rng built from the call's seed, so what a hook returns depends only on its module and its arguments,
never on which calls the worker served before. Different module sets never share a worker, so one mechanism
set's worker never loads another's code. A worker that dies or is killed is replaced by the sandbox itself.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Iterable

from recur.core.sandbox import Sandbox, SandboxResult

__all__ = ["SandboxCache", "SharedSandbox"]


class SharedSandbox:
    """A lease on a cached sandbox: ``call`` like a Sandbox; ``close`` gives the lease back (the worker stays warm
    for the next user of the same modules until the cache evicts it or is closed)."""

    def __init__(self, cache: "SandboxCache", key: str, sandbox: Sandbox):
        self._cache = cache
        self._key = key
        self.sandbox = sandbox
        self._released = False

    @property
    def modules(self) -> dict[str, str]:
        return self.sandbox.modules

    def call(self, slug: str, hook: str, args: list, seed: int) -> SandboxResult:
        if self._released:
            raise RuntimeError("this sandbox lease was closed")
        return self.sandbox.call(slug, hook, args, seed)

    def close(self) -> None:
        if not self._released:
            self._released = True
            self._cache._release(self._key)

    def __enter__(self) -> "SharedSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxCache:
    """``cache(mechanisms) -> SharedSandbox``: the run's invoker factory. Keeps at most ``capacity`` idle
    workers (least recently used go first); workers in use are never evicted. ``close()`` stops them all."""

    def __init__(self, capacity: int = 6, **sandbox_options: Any):
        self.capacity = int(capacity)
        self.sandbox_options = sandbox_options
        self.started = 0  # sandboxes created (a cache miss each)
        self.reused = 0   # leases served by a warm sandbox
        self._entries: OrderedDict[str, Sandbox] = OrderedDict()
        self._leases: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def key(modules: dict[str, str]) -> str:
        digest = hashlib.sha256()
        for name in sorted(modules):
            digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
        return digest.hexdigest()

    def __call__(self, mechanisms: Iterable[Any]) -> SharedSandbox:
        modules = {m.name: m.source for m in mechanisms}
        key = self.key(modules)
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxCache is closed")
            sandbox = self._entries.get(key)
            if sandbox is None:
                sandbox = Sandbox(modules, **self.sandbox_options)
                self._entries[key] = sandbox
                self.started += 1
            else:
                self.reused += 1
            self._entries.move_to_end(key)
            self._leases[key] = self._leases.get(key, 0) + 1
            self._evict()
            return SharedSandbox(self, key, sandbox)

    def _release(self, key: str) -> None:
        with self._lock:
            self._leases[key] = max(0, self._leases.get(key, 0) - 1)
            self._evict()

    def _evict(self) -> None:
        idle = [k for k in self._entries if not self._leases.get(k)]  # oldest first
        for k in idle[: max(0, len(self._entries) - self.capacity)]:
            self._entries.pop(k).close()
            self._leases.pop(k, None)

    def close(self) -> None:
        """Stop every worker (idempotent); leases still out fail on their next call."""
        with self._lock:
            self._closed = True
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for sandbox in entries:
            sandbox.close()
