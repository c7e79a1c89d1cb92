"""The sandbox worker process: runs mechanism hooks on JSON lines (``python -m recur.core.sandbox_worker``).

Started by :class:`recur.core.sandbox.Sandbox` in its own session/process group. Protocol (one JSON object per
line; the worker's real stdin/stdout are moved to private descriptors and fds 0/1/2 point at /dev/null, so a
hook that prints or reads cannot corrupt the protocol):

    parent -> {"op": "init", "modules": {slug: source}, "params": {slug: {...}}}
    worker -> {"op": "ready", "pid": int, "errors": {slug: "compile error"}}
    parent -> {"id": int, "slug": str, "hook": str, "args": [...], "seed": int}
    worker -> {"id": int, "ok": true, "value": <json>, "cpu": float}
            | {"id": int, "ok": false, "error": str, "cpu": float}

Each call executes the module's (pre-compiled) code in a *fresh* namespace, instantiates its single Mechanism
subclass, seeds ``random`` and builds ``random.Random(seed)`` for the hooks that take ``rng``, calls the hook on
freshly decoded JSON arguments and checks the return is JSON. Nothing survives from one call to the next (class
attributes, lru_caches, module globals), which is the purity contract of mechanism_api and what makes a
restarted worker answer exactly as the old one did.

Containment, in order of strength:

1. the process itself: a separate address space that receives and returns JSON only; the parent kills its
   whole process group (SIGKILL) when a call overruns its wall-clock deadline;
2. rlimits applied here at start-up: RLIMIT_AS (memory), RLIMIT_CPU (cumulative CPU: SIGXCPU then SIGKILL),
   RLIMIT_CORE=0, RLIMIT_FSIZE=0 (no file growth), RLIMIT_NOFILE small, RLIMIT_NPROC=0 (no fork, where the kernel
   applies it); plus a recursion limit so deep recursion is a RecursionError, not a C stack overflow;
3. defence in depth only (a determined module that got past the static policy can get around these): a
   ``sys.addaudithook`` hook, installed after start-up, refuses file opens, process/socket/ctypes/pickle/marshal
   events, imports of modules not already loaded, and frame-walk attribute reads (``gi_frame``, ``tb_frame``...);
   the module namespace gets a builtins dict without eval/exec/compile/open/globals/... and an ``__import__``
   limited to the policy's allowlist.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from recur.core.mechanism_api import ALLOWED_MODULES, RNG_HOOKS

_ALLOWED_IMPORTS = frozenset(ALLOWED_MODULES) | {"recur.core.mechanism_api", "__future__"}
_PRELOAD = tuple(sorted(_ALLOWED_IMPORTS - {"__future__"})) + (
    "copy", "fractions", "decimal", "numbers", "re", "string", "inspect", "json.decoder", "json.encoder",
    "traceback", "time",
)
_REMOVED_BUILTINS = frozenset({
    "eval", "exec", "compile", "open", "globals", "locals", "vars", "input", "breakpoint", "exit", "quit",
    "help", "memoryview", "copyright", "credits", "license", "__import__", "__loader__", "__spec__",
    "__package__", "__doc__",
})
_BLOCKED_EVENTS = frozenset({
    "open", "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames", "setopencode",
    "code.__new__", "function.__new__", "builtins.input", "builtins.breakpoint", "cpython.run_command",
    "cpython.run_module", "cpython.run_file", "cpython.run_startup", "cpython.run_interactivehook",
})
_BLOCKED_PREFIXES = frozenset({
    "os", "subprocess", "socket", "shutil", "ctypes", "winreg", "urllib", "http", "ftplib", "smtplib", "poplib",
    "imaplib", "nntplib", "telnetlib", "webbrowser", "pty", "fcntl", "mmap", "resource", "signal", "gc",
    "marshal", "pickle", "sqlite3", "tempfile", "glob", "syslog", "shelve", "msvcrt", "_winapi", "select",
    "ssl",
})
_FRAME_ATTRS = frozenset({"gi_frame", "cr_frame", "ag_frame", "tb_frame", "f_back", "f_globals", "f_locals",
                          "f_builtins", "gi_code", "cr_code", "ag_code"})
_MAX_ERROR_CHARS = 2000
_JSON_MAX_DEPTH = 256


class _State:
    internal = False          # the worker's own frame reads (error line numbers) are allowed
    loaded: frozenset[str] = frozenset()


def _apply_limits(memory: int, cpu: int) -> None:
    import resource

    def setlim(kind: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        try:
            cur_soft, cur_hard = resource.getrlimit(kind)
            if cur_hard != resource.RLIM_INFINITY:
                hard = min(hard, cur_hard)
                soft = min(soft, hard)
            resource.setrlimit(kind, (soft, hard))
        except (ValueError, OSError):
            pass

    if memory > 0:
        setlim(resource.RLIMIT_AS, memory)
    if cpu > 0:
        setlim(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at `cpu` seconds, SIGKILL a second later
    setlim(resource.RLIMIT_CORE, 0)


def _late_limits() -> None:
    import resource

    for kind, value in ((resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NOFILE, 32), (resource.RLIMIT_NPROC, 0)):
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def _audit(event: str, args: tuple) -> None:
    if event in _BLOCKED_EVENTS:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import":
        name = args[0]
        if name in _State.loaded or name in _ALLOWED_IMPORTS:
            return
        raise PermissionError(f"sandbox: import of {name!r} is not allowed")
    if event == "object.__getattr__":
        if len(args) > 1 and args[1] in _FRAME_ATTRS and not _State.internal:
            raise PermissionError(f"sandbox: reading .{args[1]} is not allowed")
        return
    dot = event.find(".")
    if dot > 0 and event[:dot] in _BLOCKED_PREFIXES:
        raise PermissionError(f"sandbox: {event} is not allowed")


def _json_check(value: object, budget: int) -> int:
    """Fast check: 0 = JSON (scalars, lists/tuples, dicts with str keys, bounded depth), 1 = not JSON,
    2 = larger than ``budget`` (string characters + container items; found before anything is encoded)."""
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    size = 0
    while stack:
        x, d = pop()
        t = type(x)
        if t is str:
            size += len(x)
        elif t is float or t is int or t is bool or x is None:
            size += 1
        elif d > _JSON_MAX_DEPTH:
            return 1
        elif t is list or t is tuple or isinstance(x, (list, tuple)):
            size += len(x)
            for y in x:
                push((y, d + 1))
        elif isinstance(x, dict):
            size += len(x)
            for k, y in x.items():
                if not isinstance(k, str):
                    return 1
                size += len(k)
                push((y, d + 1))
        elif isinstance(x, (str, int, float)):  # subclasses (IntEnum, str Enum) encode as their base value
            size += len(x) if isinstance(x, str) else 1
        else:
            return 1
        if size > budget:
            return 2
    return 0


def _json_problem(value: object) -> str:
    """Where the first non-JSON piece is (slow path, only on failure)."""
    stack = [(value, "$", 0)]
    while stack:
        x, path, d = stack.pop()
        if x is None or isinstance(x, (str, int, float)):
            continue
        if d > _JSON_MAX_DEPTH:
            return f"nested deeper than {_JSON_MAX_DEPTH} at {path}"
        if isinstance(x, (list, tuple)):
            stack.extend((y, f"{path}[{i}]", d + 1) for i, y in enumerate(x))
        elif isinstance(x, dict):
            for k, y in x.items():
                if not isinstance(k, str):
                    return f"dict key {k!r} at {path} is not a string"
                stack.append((y, f"{path}.{k}", d + 1))
        else:
            return f"{type(x).__name__} at {path} is not JSON"
    return "not JSON"


def _finite_or_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _error_text(exc: BaseException, filename: str) -> str:
    try:
        text = str(exc)
        msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    except BaseException:  # a hostile __str__
        msg = type(exc).__name__
    line = None
    _State.internal = True
    try:
        tb = exc.__traceback__
        depth = 0
        while tb is not None and depth < 10_000:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
            depth += 1
    except BaseException:
        pass
    finally:
        _State.internal = False
    if line is not None:
        msg += f" (line {line})"
    return msg[:_MAX_ERROR_CHARS]


class _Worker:
    def __init__(self, recursion_limit: int, max_result: int) -> None:
        import builtins
        import copy
        import json
        import random
        import time
        import types

        from recur.core import mechanism_api

        self.json = json
        self.random = random
        self.copy = copy
        self.time = time
        self.types = types
        self.Mechanism = mechanism_api.Mechanism
        self.hooks = dict(mechanism_api.HOOKS)
        self.recursion_limit = recursion_limit
        self.max_result = max_result
        self.codes: dict[str, object] = {}
        self.errors: dict[str, str] = {}
        self.params: dict[str, dict] = {}
        real_import = builtins.__import__

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level != 0 or name not in _ALLOWED_IMPORTS:
                raise ImportError(f"sandbox: import of {name!r} is not allowed")
            return real_import(name, globals, locals, fromlist, level)

        safe = {k: v for k, v in vars(builtins).items() if k not in _REMOVED_BUILTINS}
        safe["__import__"] = guarded_import
        self.safe_builtins = safe

    def init(self, msg: dict) -> None:
        for slug, source in msg.get("modules", {}).items():
            try:
                self.codes[slug] = compile(source, f"<mechanism:{slug}>", "exec", dont_inherit=True)
            except BaseException as exc:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
                self.errors[slug] = f"could not compile: {type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        self.params = {k: v for k, v in (msg.get("params") or {}).items() if isinstance(v, dict)}

    def call(self, req: dict) -> dict:
        slug = req.get("slug")
        hook = req.get("hook")
        args = req.get("args")
        seed = req.get("seed", 0)
        if slug not in self.codes:
            return {"ok": False, "error": self.errors.get(slug, f"unknown mechanism {slug!r}")}
        n_args = self.hooks.get(hook, -1) - (hook in RNG_HOOKS)  # HOOKS counts the rng argument too
        if not isinstance(args, list) or len(args) != n_args:
            return {"ok": False, "error": f"bad call: hook {hook!r} with {len(args or [])} args"}
        filename = f"<mechanism:{slug}>"
        try:
            value = self._run(slug, hook, args, seed)
        except BaseException as exc:  # MemoryError, RecursionError, SystemExit, hook exceptions: all results
            value = None
            return {"ok": False, "error": _error_text(exc, filename)}
        try:
            verdict = _json_check(value, self.max_result)
            if verdict == 1:
                return {"ok": False, "error": f"non-JSON return from {hook}: {_json_problem(value)}"}
            if verdict == 2:
                return {"ok": False, "error": f"result too large (over {self.max_result} bytes)"}
        except BaseException as exc:
            return {"ok": False, "error": f"could not check return of {hook}: {type(exc).__name__}"}
        return {"ok": True, "value": value}

    def _run(self, slug: str, hook: str, args: list, seed: int) -> object:
        name = f"recur_mechanism_{slug}"
        module = self.types.ModuleType(name)  # registered: dataclasses & co. look classes' modules up
        ns = module.__dict__
        ns["__builtins__"] = self.safe_builtins
        sys.modules[name] = module
        self.Mechanism.PARAMS = {}  # the shared base class: nothing a previous call did to it survives
        self.random.seed(seed)
        exec(self.codes[slug], ns)  # noqa: S102 - the module already passed the static policy
        mech = self.Mechanism
        classes = [v for v in ns.values()
                   if isinstance(v, type) and v is not mech and issubclass(v, mech) and v.__module__ == name]
        if len(classes) != 1:
            raise TypeError(f"module must define exactly one Mechanism subclass, found {len(classes)}")
        cls = classes[0]
        base_params = cls.PARAMS if isinstance(cls.PARAMS, dict) else {}
        override = self.params.get(slug)
        cls.PARAMS = {**base_params, **self.copy.deepcopy(override)} if override else dict(base_params)
        instance = cls()
        fn = getattr(instance, hook)
        if hook in RNG_HOOKS:
            return fn(*args, self.random.Random(seed))
        return fn(*args)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="recur.core.sandbox_worker", description="recur's mechanism sandbox worker")
    ap.add_argument("--memory", type=int, default=512 << 20, help="RLIMIT_AS in bytes")
    ap.add_argument("--cpu", type=int, default=60, help="RLIMIT_CPU in seconds")
    ap.add_argument("--recursion", type=int, default=1000, help="Python recursion limit for hooks")
    ap.add_argument("--max-result", type=int, default=16 << 20, help="largest JSON result in bytes")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _apply_limits(args.memory, args.cpu)

    # private protocol descriptors; 0/1/2 -> /dev/null so prints/reads by hooks cannot touch the protocol
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    reader = os.fdopen(in_fd, "rb", buffering=1 << 16)

    import importlib
    import json
    import time

    for mod in _PRELOAD:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    worker = _Worker(args.recursion, args.max_result)
    line = reader.readline()
    if not line:
        return 0
    worker.init(json.loads(line))

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 2)  # start-up errors went to the parent's log file; a hook's output does not
    os.close(devnull)
    _late_limits()
    _State.loaded = frozenset(sys.modules)
    sys.addaudithook(_audit)
    sys.setrecursionlimit(max(100, args.recursion + 50))  # + the worker's own frames
    _write_all(out_fd, json.dumps({"op": "ready", "pid": os.getpid(), "errors": worker.errors}).encode() + b"\n")

    dumps, loads, process_time = json.dumps, json.loads, time.process_time
    max_result = args.max_result
    while True:
        try:
            line = reader.readline()
        except MemoryError:
            line = b""
        if not line:
            return 0
        try:
            req = loads(line)
            rid = req.get("id")
            resp = worker.call(req)
        except BaseException as exc:  # malformed request / MemoryError decoding a huge one
            rid, resp = None, {"ok": False, "error": f"bad request: {type(exc).__name__}"}
        resp["id"] = rid
        try:
            resp["cpu"] = process_time()
            try:
                text = dumps(resp, allow_nan=False)
            except ValueError:  # NaN/inf -> null (strict JSON, like records.json_safe)
                text = dumps(_finite_or_none(resp), allow_nan=False)
            data = text.encode("utf-8", errors="surrogatepass")
            if len(data) > max_result:
                data = dumps({"id": rid, "ok": False, "cpu": resp["cpu"],
                              "error": f"result too large ({len(data)} bytes > {max_result})"}).encode()
        except BaseException as exc:  # MemoryError, RecursionError, ValueError (circular), surrogates
            resp = None
            data = dumps({"id": rid, "ok": False, "cpu": process_time(),
                          "error": f"could not encode result: {type(exc).__name__}: {str(exc)[:200]}"}).encode()
        resp = None
        _write_all(out_fd, data + b"\n")


if __name__ == "__main__":
    sys.exit(main())
