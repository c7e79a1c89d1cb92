"""Sandbox: runs mechanism hooks in a warm worker subprocess with rlimits, a wall-clock deadline and a hard kill.

This is the second safety layer (the first is the static policy, ``recur.mechanism_store.policy``) and the real
containment: a mechanism's code only ever runs in the worker process (``python -m recur.core.sandbox_worker``),
which

* lives in its own session / process group (``start_new_session=True``), so a kill takes anything it spawned;
* applies RLIMIT_AS (``memory_bytes``), RLIMIT_CPU (``cpu_seconds``, cumulative over the worker's life),
  RLIMIT_CORE/FSIZE/NOFILE/NPROC and a recursion limit to itself at start-up;
* exchanges strict JSON lines only: arguments are decoded fresh in the worker (so the caller's objects can never
  be mutated), and a return value that is not JSON is an error, never a pickled object. NaN/inf (in arguments
  or returns) travel as ``null``, the same mapping as ``records.json_safe``; tuples arrive as lists; dict keys
  must be strings in a return value;
* runs each call in a fresh module namespace (no state survives between calls: hooks are pure).

The parent enforces a per-call wall-clock deadline with ``poll`` on the pipe; on overrun it SIGKILLs the worker's
process group and returns ``killed=True``; the next call starts a fresh worker (a crashed worker, e.g. killed by
RLIMIT_CPU, is restarted the same way). Hook misbehaviour never raises: it comes back as a
:class:`SandboxResult` with ``ok=False``. Only caller mistakes raise (unknown slug/hook, wrong arity,
non-JSON arguments, using a closed sandbox) or an environment failure to start a worker at all
(:class:`SandboxError`).

The worker also drops dangerous builtins and installs an audit hook refusing file/process/socket events; that is
defence in depth, not the boundary (see sandbox_worker's docstring).

Per-call overhead is a pipe round trip plus re-executing the module body (tens to hundreds of microseconds;
``bench/bench_sandbox.py`` measures it). ``SandboxResult.seconds`` is the wall-clock time the parent saw for
the call, start-up of a replacement worker excluded.
"""
from __future__ import annotations

import errno
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from recur.core.mechanism_api import HOOKS, RNG_HOOKS
from recur.core.records import json_safe

__all__ = ["Sandbox", "SandboxResult", "SandboxError", "MiB", "RNG_HOOKS", "JSON_ARGS"]

MiB = 1 << 20
_WORKER_MODULE = "recur.core.sandbox_worker"
_CPU_RECYCLE_FRACTION = 0.8  # restart a worker proactively once it used this share of its RLIMIT_CPU
JSON_ARGS: dict[str, int] = {h: n - (h in RNG_HOOKS) for h, n in HOOKS.items()}
"""Hook name -> number of JSON arguments a caller passes (HOOKS counts rng too)."""


class SandboxError(RuntimeError):
    """The sandbox itself could not work (a worker failed to start); never raised for a hook's behaviour."""


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one hook call. ``killed`` means the worker process ended during the call (deadline kill,
    RLIMIT_CPU, a crash); ``error`` says which. ``seconds`` is the parent's wall-clock time for the call."""

    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    killed: bool = False


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Protocol(Exception):
    pass


class Sandbox:
    """A warm worker process running the hooks of ``modules`` (slug -> module source).

    >>> with Sandbox({"pick_first": src}) as sb:
    ...     r = sb.call("pick_first", "select", [proposals, history], seed=7)
    ...     r.ok, r.value
    """

    def __init__(
        self,
        modules: Mapping[str, str],
        call_timeout_s: float = 2.0,
        memory_bytes: int = 512 * MiB,
        cpu_seconds: int = 60,
        *,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        recursion_limit: int = 1000,
        max_result_bytes: int = 16 * MiB,
        start_timeout_s: float = 15.0,
        python: str | None = None,
        eager: bool = True,
    ) -> None:
        if not isinstance(modules, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in modules.items()
        ):
            raise TypeError("modules must map slug (str) -> module source (str)")
        if not (call_timeout_s > 0 and math.isfinite(call_timeout_s)):
            raise ValueError("call_timeout_s must be a positive number")
        self.modules: dict[str, str] = dict(modules)
        self.params: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (params or {}).items()}
        unknown = set(self.params) - set(self.modules)
        if unknown:
            raise ValueError(f"params for unknown mechanisms: {sorted(unknown)}")
        self.call_timeout_s = float(call_timeout_s)
        self.memory_bytes = int(memory_bytes)
        self.cpu_seconds = int(cpu_seconds)
        self.recursion_limit = int(recursion_limit)
        self.max_result_bytes = int(max_result_bytes)
        self.start_timeout_s = float(start_timeout_s)
        self.python = python or sys.executable
        self.starts = 0                  # workers started so far (1 + restarts)
        self.startup_seconds = 0.0       # how long the last worker took to become ready
        self.load_errors: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._poller: select.poll | None = None
        self._rbuf = bytearray()
        self._next_id = 0
        self._closed = False
        self._lock = threading.Lock()
        self._init_line = (json.dumps({"op": "init", "modules": self.modules, "params": self.params}) + "\n").encode()
        if eager:
            with self._lock:
                self._start()

    # ----------------------------------------------------------------------------------------- lifecycle
    @property
    def pid(self) -> int | None:
        """The current worker's pid (None when no worker is running)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stop the worker (idempotent). The sandbox cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        self._stop(graceful=True)

    def restart(self) -> None:
        """Replace the worker with a fresh one now (normally done lazily after a kill or crash)."""
        with self._lock:
            self._check_open()
            self._stop()
            self._start()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Sandbox is closed")

    def _start(self) -> None:
        cmd = [
            self.python, "-P", "-B", "-m", _WORKER_MODULE,
            "--memory", str(self.memory_bytes), "--cpu", str(self.cpu_seconds),
            "--recursion", str(self.recursion_limit), "--max-result", str(self.max_result_bytes),
        ]
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONBREAKPOINT", "PYTHONMALLOC")}
        env["PYTHONHASHSEED"] = "0"          # set/dict-of-str iteration order is the same in every worker
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        t0 = time.perf_counter()
        log = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=0,
                start_new_session=True, close_fds=True, env=env,
            )
        except OSError as exc:
            log.close()
            raise SandboxError(f"could not start the sandbox worker: {exc}") from exc
        self._proc = proc
        self._rbuf = bytearray()
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._poller = select.poll()
        self._poller.register(proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self.starts += 1
        deadline = t0 + self.start_timeout_s
        try:
            self._write(self._init_line, deadline)
            ready = json.loads(self._read_line(deadline, 1 << 24))
            if ready.get("op") != "ready":
                raise _Protocol(f"unexpected first message {str(ready)[:200]}")
        except (_Timeout, _Died, _Protocol, ValueError) as exc:
            self._kill()
            log.seek(0)
            tail = log.read()[-4000:].decode("utf-8", "replace").strip()
            log.close()
            what = "timed out" if isinstance(exc, _Timeout) else f"failed ({type(exc).__name__}: {exc})"
            raise SandboxError(f"sandbox worker start-up {what}; worker stderr:\n{tail or '(empty)'}") from None
        log.close()
        self.load_errors = dict(ready.get("errors") or {})
        self.startup_seconds = time.perf_counter() - t0

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except (ProcessLookupError, OSError):
            pass
        self._reap()

    def _reap(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        self._proc = None
        self._poller = None
        self._rbuf = bytearray()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                return proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return None

    def _stop(self, graceful: bool = False) -> None:
        proc = self._proc
        if proc is None:
            return
        if graceful and proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()  # EOF: the worker exits on its own
                proc.wait(timeout=0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            self._kill()
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group
            except (ProcessLookupError, PermissionError):
                pass
            self._reap()

    # ----------------------------------------------------------------------------------------- pipe I/O
    def _write(self, data: bytes, deadline: float) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        out_poll: select.poll | None = None
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                raise _Died("worker closed its input") from None
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    raise _Died("worker closed its input") from None
                raise
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise _Timeout()
            if out_poll is None:
                out_poll = select.poll()
                out_poll.register(fd, select.POLLOUT | select.POLLERR | select.POLLHUP)
            events = out_poll.poll(max(1, math.ceil(remaining * 1000)))
            for _, ev in events:
                if ev & (select.POLLERR | select.POLLHUP) and not ev & select.POLLOUT:
                    raise _Died("worker closed its input")

    def _read_line(self, deadline: float, limit: int) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None and self._poller is not None
        fd = self._proc.stdout.fileno()
        buf = self._rbuf
        scanned = 0
        while True:
            i = buf.find(b"\n", scanned)
            if i >= 0:
                line = bytes(buf[:i])
                del buf[: i + 1]
                return line
            scanned = len(buf)
            if len(buf) > limit:
                raise _Protocol(f"worker sent more than {limit} bytes without a newline")
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise _Timeout()
            if not self._poller.poll(max(1, math.ceil(remaining * 1000))):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise _Died("worker closed its output")
            buf += chunk

    # ----------------------------------------------------------------------------------------- calls
    def call(self, slug: str, hook: str, args: list, seed: int) -> SandboxResult:
        """Run ``hook`` of mechanism ``slug`` on JSON ``args`` with ``seed``; never raises for hook behaviour."""
        if slug not in self.modules:
            raise KeyError(f"unknown mechanism {slug!r}")
        if hook not in HOOKS:
            raise ValueError(f"unknown hook {hook!r} (hooks: {', '.join(HOOKS)})")
        if not isinstance(args, (list, tuple)) or len(args) != JSON_ARGS[hook]:
            raise ValueError(f"hook {hook!r} takes {JSON_ARGS[hook]} JSON argument(s) as a list"
                             + (" (rng is built from seed)" if hook in RNG_HOOKS else ""))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError("seed must be an int")
        with self._lock:
            self._check_open()
            self._next_id += 1
            rid = self._next_id
            request = (_strict_dumps({"id": rid, "slug": slug, "hook": hook, "args": list(args), "seed": seed})
                       + "\n").encode("utf-8", errors="surrogatepass")
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self._stop()
                self._start()
            return self._roundtrip(rid, slug, hook, request)

    def caller(self, slug: str) -> Callable[[str, list, int], tuple[bool, Any, str | None, float]]:
        """``caller(hook, args, seed) -> (ok, value, error, seconds)`` for one mechanism: the shape
        ``mechanism_store.properties.check_properties`` takes, so the property tests can run in the sandbox."""
        if slug not in self.modules:
            raise KeyError(f"unknown mechanism {slug!r}")

        def call(hook: str, args: list, seed: int) -> tuple[bool, Any, str | None, float]:
            r = self.call(slug, hook, args, seed)
            return r.ok, r.value, r.error, r.seconds

        return call

    def _roundtrip(self, rid: int, slug: str, hook: str, request: bytes) -> SandboxResult:
        t0 = time.perf_counter()
        deadline = t0 + self.call_timeout_s
        try:
            self._write(request, deadline)
            line = self._read_line(deadline, self.max_result_bytes + 4096)
        except _Timeout:
            self._kill()
            return SandboxResult(False, None, f"timeout: {slug}.{hook} ran past {self.call_timeout_s:g}s; "
                                 "worker killed", time.perf_counter() - t0, True)
        except _Died:
            rc = self._reap()
            return SandboxResult(False, None, f"worker died during {slug}.{hook}: {_describe_exit(rc)}",
                                 time.perf_counter() - t0, True)
        except _Protocol as exc:
            self._kill()
            return SandboxResult(False, None, f"protocol error: {exc}; worker killed", time.perf_counter() - t0, True)
        seconds = time.perf_counter() - t0
        try:
            resp = json.loads(line)
            if not isinstance(resp, dict) or resp.get("id") != rid:
                raise ValueError("response id does not match the request")
        except (ValueError, RecursionError) as exc:
            self._kill()
            return SandboxResult(False, None, f"protocol error: {exc}; worker killed", seconds, True)
        cpu = resp.get("cpu")
        if isinstance(cpu, (int, float)) and self.cpu_seconds > 0 and cpu > _CPU_RECYCLE_FRACTION * self.cpu_seconds:
            self._stop()  # recycle before RLIMIT_CPU would kill it mid-call; the next call starts a fresh one
        if resp.get("ok") is True:
            return SandboxResult(True, resp.get("value"), None, seconds, False)
        return SandboxResult(False, None, str(resp.get("error") or "unknown error"), seconds, False)


def _strict_dumps(obj: Any) -> str:
    """Strict JSON (NaN/inf become null, as ``records.json_safe`` writes them); raise TypeError if impossible."""
    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:
        pass  # NaN/inf somewhere (or a circular reference: caught below)
    except (TypeError, RecursionError) as exc:
        raise TypeError(f"hook arguments must be JSON-serialisable: {exc}") from None
    try:
        return json.dumps(json_safe(obj), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"hook arguments must be JSON-serialisable: {type(exc).__name__}: {exc}") from None


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "exit status unknown"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = {"SIGXCPU": " (CPU limit)", "SIGKILL": " (killed; memory or CPU hard limit?)",
                "SIGSEGV": " (crash)", "SIGXFSZ": " (file size limit)"}.get(name, "")
        return f"{name}{hint}"
    return f"exit code {rc}"
