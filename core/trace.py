"""Trace store: one SQLite database (WAL) per workspace at ``.recur/trace.db``.

Every level writes here through the driver: a trial row is inserted as ``running`` *before* the trial starts
and completed in one transaction after it, so a run killed with ``kill -9`` can resume without losing or
repeating a trial. Schema changes bump ``SCHEMA_VERSION``; an older database is migrated, a newer one refused.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from recur.core.records import RUNNING, Candidate, Decision, Outcome, Trial, json_safe

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    seed INTEGER NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, level INTEGER NOT NULL, scope TEXT NOT NULL,
    step INTEGER NOT NULL, parent TEXT, kind TEXT NOT NULL, seed INTEGER NOT NULL,
    candidate TEXT NOT NULL, outcome TEXT, decision TEXT, status TEXT NOT NULL,
    metric REAL, seconds REAL, kept INTEGER, commit_sha TEXT, attempts INTEGER NOT NULL DEFAULT 1,
    hook_calls TEXT, started REAL NOT NULL, finished REAL
);
CREATE INDEX IF NOT EXISTS trials_scope ON trials(scope, step);
CREATE INDEX IF NOT EXISTS trials_run_level ON trials(run_id, level);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, level INTEGER, trial_id TEXT, purpose TEXT,
    model TEXT, prompt TEXT, response TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
    cost_usd REAL, latency_s REAL, attempt INTEGER, outcome TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_calls (
    run_id TEXT NOT NULL, scope TEXT NOT NULL, level INTEGER NOT NULL, mechanism TEXT NOT NULL,
    hook TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0, last_error TEXT, changed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, scope, mechanism, hook)
);
CREATE TABLE IF NOT EXISTS memo (
    run_id TEXT NOT NULL, key TEXT NOT NULL, trial_id TEXT NOT NULL, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, ts REAL NOT NULL, level INTEGER,
    kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT
);
"""


def empty_counts() -> dict[str, Any]:
    """Per (mechanism, hook) counters: calls, changed decisions, errors, seconds, last error."""
    return {"calls": 0, "changed": 0, "errors": 0, "seconds": 0.0, "last_error": None}


def add_counts(total: dict[str, Any], v: dict[str, Any]) -> None:
    """Add one counter dict into another (the one place counters are summed)."""
    for key in ("calls", "changed", "errors", "seconds"):
        total[key] = total.get(key, 0) + v.get(key, 0)
    total["last_error"] = v.get("last_error") or total.get("last_error")


def charged_trials(rows: list[dict[str, Any]]) -> int:
    """Level-1 trials the finished rows (from ``TraceStore.trials``) charged: a reused trial costs 0."""
    return int(sum((r["outcome"] or {}).get("cost", {}).get("trials", 1) for r in rows if r["status"] != RUNNING))


def _merge_hooks(existing: str | None, delta: dict | None) -> str:
    """Add hook-call counts ``{(mechanism, hook): {calls, errors, seconds, last_error}}`` to a stored JSON blob."""
    merged: dict[str, dict[str, Any]] = json.loads(existing or "{}")
    for (mech, hook), v in (delta or {}).items():
        add_counts(merged.setdefault(f"{mech}\t{hook}", empty_counts()), v)
    return json.dumps(merged, sort_keys=True)


class TraceError(Exception):
    """The trace database is unreadable or from a newer recur; shown to the user as one line."""


@dataclass
class TrialRow:
    id: str
    scope: str
    step: int
    level: int
    status: str
    candidate: Candidate
    outcome: Outcome | None
    decision: Decision | None
    commit_sha: str | None
    attempts: int

    @property
    def finished(self) -> bool:
        return self.status != RUNNING and self.outcome is not None and self.decision is not None

    def trial(self) -> Trial:
        assert self.outcome is not None and self.decision is not None
        return Trial(self.candidate, self.outcome, self.decision)


class TraceStore:
    """Thin, typed access to the trace database. Safe to open from several threads (one connection each)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise TraceError(f"cannot open trace database {self.path}: {exc}") from exc
        return conn

    def _migrate(self) -> None:
        try:
            self._conn.executescript(SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise TraceError(f"trace database {self.path} is corrupt or not a database: {exc}") from exc
        if row is None:
            self._conn.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) < SCHEMA_VERSION:  # version 1 lacked changed-decision counts
            cols = [r[1] for r in self._conn.execute("PRAGMA table_info(hook_calls)").fetchall()]
            if "changed" not in cols:
                self._conn.execute("ALTER TABLE hook_calls ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
            self._conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise TraceError(
                f"trace database {self.path} has schema {row[0]}, newer than this recur ({SCHEMA_VERSION}); upgrade recur"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    # ----------------------------------------------------------------- runs
    def start_run(self, run_id: str, config: dict[str, Any], seed: int) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO runs(id, created, config, status, seed) VALUES(?,?,?,?,?)",
                (run_id, time.time(), json.dumps(json_safe(config), sort_keys=True), RUNNING, seed),
            )
            c.execute("UPDATE runs SET status=? WHERE id=?", (RUNNING, run_id))

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET status=?, finished=? WHERE id=?", (status, time.time(), run_id))

    def run(self, run_id: str | None = None) -> dict[str, Any] | None:
        """A run by id, or the latest run."""
        q = "SELECT id, created, config, status, seed, finished FROM runs "
        row = (
            self._conn.execute(q + "WHERE id=?", (run_id,)).fetchone()
            if run_id
            else self._conn.execute(q + "ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()
        )
        if row is None:
            return None
        return {"id": row[0], "created": row[1], "config": json.loads(row[2]), "status": row[3], "seed": row[4], "finished": row[5]}

    # --------------------------------------------------------------- trials
    def begin_trial(self, run_id: str, scope: str, step: int, candidate: Candidate, hooks: dict | None = None) -> None:
        """Write the trial as ``running`` before it starts (idempotent: a re-run bumps ``attempts``).

        ``hooks`` are the hook calls made while proposing it, stored in the same transaction so a kill at any
        point neither loses nor double-counts them.
        """
        with self.transaction() as c:
            row = c.execute("SELECT hook_calls FROM trials WHERE id=?", (candidate.id,)).fetchone()
            if row is not None:
                c.execute("UPDATE trials SET attempts = attempts + 1, started=?, hook_calls=? WHERE id=?",
                          (time.time(), _merge_hooks(row[0], hooks), candidate.id))
            else:
                c.execute(
                    "INSERT INTO trials(id, run_id, level, scope, step, parent, kind, seed, candidate, status, started,"
                    " hook_calls) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    (candidate.id, run_id, candidate.level, scope, step, candidate.parent, candidate.kind,
                     candidate.seed, candidate.to_json(), RUNNING, time.time(), _merge_hooks(None, hooks)),
                )

    def finish_trial(self, trial_id: str, outcome: Outcome, decision: Decision, hooks: dict | None = None,
                     memo_key: str | None = None, run_id: str | None = None) -> None:
        """Complete a trial; a ``memo_key`` (its files + seed) lets a later identical trial reuse this outcome."""
        with self.transaction() as c:
            if memo_key and run_id:
                c.execute("INSERT OR IGNORE INTO memo(run_id, key, trial_id) VALUES(?,?,?)", (run_id, memo_key, trial_id))
            row = c.execute("SELECT hook_calls FROM trials WHERE id=?", (trial_id,)).fetchone()
            c.execute(
                "UPDATE trials SET outcome=?, decision=?, status=?, metric=?, seconds=?, kept=?, finished=?,"
                " hook_calls=? WHERE id=?",
                (outcome.to_json(), decision.to_json(), outcome.status,
                 outcome.metric if outcome.ok else None, float(outcome.cost.get("seconds", 0.0)),
                 int(decision.keep), time.time(), _merge_hooks(row[0] if row else None, hooks), trial_id),
            )

    def scope_hook_calls(self, scope: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Hook calls made by trials of ``scope`` itself (not its sub-windows), summed per (mechanism, hook)."""
        total: dict[tuple[str, str], dict[str, Any]] = {}
        for (blob,) in self._conn.execute("SELECT hook_calls FROM trials WHERE scope=?", (scope,)).fetchall():
            for key, v in json.loads(blob or "{}").items():
                mech, hook = key.split("\t", 1)
                add_counts(total.setdefault((mech, hook), empty_counts()), v)
        return total

    def memo(self, run_id: str, key: str) -> TrialRow | None:
        """The finished trial of this run that already ran these exact files on this seed, if any."""
        row = self._conn.execute("SELECT trial_id FROM memo WHERE run_id=? AND key=?", (run_id, key)).fetchone()
        found = self.trial_row(row[0]) if row else None
        return found if found is not None and found.finished else None

    def set_commit(self, trial_id: str, sha: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE trials SET commit_sha=? WHERE id=?", (sha, trial_id))

    def trial_row(self, trial_id: str) -> TrialRow | None:
        row = self._conn.execute(self._TRIAL_SELECT + "WHERE id=?", (trial_id,)).fetchone()
        return self._row(row) if row else None

    def scope_rows(self, scope: str) -> list[TrialRow]:
        rows = self._conn.execute(self._TRIAL_SELECT + "WHERE scope=? ORDER BY step", (scope,)).fetchall()
        return [self._row(r) for r in rows]

    def trials(self, run_id: str | None = None, level: int | None = None) -> list[dict[str, Any]]:
        """Flat trial rows for status/export/report, oldest first."""
        cols = ["id", "run_id", "level", "scope", "step", "kind", "status", "metric", "seconds", "kept",
                "commit_sha", "candidate", "outcome", "decision", "started", "finished", "attempts"]
        out = []
        for d in self._select("trials", cols, {"run_id": run_id, "level": level}, "started, rowid"):
            for key in ("candidate", "outcome", "decision"):
                d[key] = json.loads(d[key]) if d[key] else None
            out.append(d)
        return out

    def _select(self, table: str, cols: list[str], equal: dict[str, Any], order: str,
                scope_prefix: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``table`` as dicts of ``cols``, filtered by the ``equal`` entries that are set (falsy strings
        count as unset, as the callers' ``None`` does) and by a scope and its sub-scopes."""
        q = f"SELECT {', '.join(cols)} FROM {table} WHERE 1=1"
        args: list[Any] = []
        for name, value in equal.items():
            if value is not None and value != "":
                q += f" AND {name}=?"
                args.append(value)
        if scope_prefix:
            q += " AND (scope=? OR scope LIKE ?)"
            args += [scope_prefix, scope_prefix + "/%"]
        return [dict(zip(cols, r)) for r in self._conn.execute(f"{q} ORDER BY {order}", args).fetchall()]

    _TRIAL_SELECT = "SELECT id, scope, step, level, status, candidate, outcome, decision, commit_sha, attempts FROM trials "

    @staticmethod
    def _row(r: tuple) -> TrialRow:
        return TrialRow(
            id=r[0], scope=r[1], step=r[2], level=r[3], status=r[4],
            candidate=Candidate.from_json(r[5]),
            outcome=Outcome.from_json(r[6]) if r[6] else None,
            decision=Decision.from_json(r[7]) if r[7] else None,
            commit_sha=r[8], attempts=r[9],
        )

    # ------------------------------------------------------------ llm calls
    def record_llm_call(self, run_id: str | None, call: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO llm_calls(run_id, level, trial_id, purpose, model, prompt, response, prompt_tokens,"
                " completion_tokens, cost_usd, latency_s, attempt, outcome, created) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, call.get("level"), call.get("trial_id"), call.get("purpose"), call.get("model"),
                 call.get("prompt") if isinstance(call.get("prompt"), str) else json.dumps(call.get("prompt")),
                 call.get("response"), call.get("prompt_tokens", 0), call.get("completion_tokens", 0),
                 call.get("cost_usd", 0.0), call.get("latency_s", 0.0), call.get("attempt", 1),
                 call.get("outcome", "ok"), time.time()),
            )

    def llm_calls(self, run_id: str | None = None) -> list[dict[str, Any]]:
        cols = ["id", "run_id", "level", "trial_id", "purpose", "model", "prompt", "response", "prompt_tokens",
                "completion_tokens", "cost_usd", "latency_s", "attempt", "outcome", "created"]
        q = f"SELECT {', '.join(cols)} FROM llm_calls" + (" WHERE run_id=?" if run_id else "") + " ORDER BY id"
        return [dict(zip(cols, r)) for r in self._conn.execute(q, (run_id,) if run_id else ()).fetchall()]

    # ----------------------------------------------------------- hook calls
    def add_hook_calls(self, run_id: str, scope: str, level: int, counts: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Add per-(mechanism, hook) call counts of one window; replacing them keeps resume idempotent."""
        with self.transaction() as c:
            for (mech, hook), v in counts.items():
                c.execute(
                    "INSERT INTO hook_calls(run_id, scope, level, mechanism, hook, calls, errors, seconds, last_error,"
                    " changed) VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, scope, mechanism, hook) DO UPDATE SET"
                    " calls=excluded.calls, errors=excluded.errors, seconds=excluded.seconds,"
                    " last_error=excluded.last_error, changed=excluded.changed",
                    (run_id, scope, level, mech, hook, v["calls"], v["errors"], v["seconds"], v.get("last_error"),
                     v.get("changed", 0)),
                )

    def hook_calls(self, run_id: str | None = None, scope_prefix: str | None = None) -> list[dict[str, Any]]:
        cols = ["run_id", "scope", "level", "mechanism", "hook", "calls", "errors", "seconds", "last_error", "changed"]
        return self._select("hook_calls", cols, {"run_id": run_id}, "rowid", scope_prefix=scope_prefix)

    def hook_totals(self, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Calls, changed decisions and errors per (mechanism, hook), summed over every window of a run."""
        total: dict[tuple[str, str], dict[str, Any]] = {}
        for h in self.hook_calls(run_id):
            add_counts(total.setdefault((h["mechanism"], h["hook"]), empty_counts()), h)
        return total

    # --------------------------------------------------------------- events
    def event(self, run_id: str | None, kind: str, message: str, level: int | None = None, data: Any = None) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO events(run_id, ts, level, kind, message, data) VALUES(?,?,?,?,?,?)",
                (run_id, time.time(), level, kind, message, json.dumps(json_safe(data)) if data is not None else None),
            )

    def events(self, run_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        cols = ["id", "run_id", "ts", "level", "kind", "message", "data"]
        rows = self._select("events", cols, {"run_id": run_id, "kind": kind}, "id")
        for r in rows:
            r["data"] = json.loads(r["data"]) if r["data"] else None
        return rows
