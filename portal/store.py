"""The portal's own records: the audit log and the goal schedules stakeholders submitted.

Contract `PortalStore`; `SqlitePortalStore` keeps both tables in the portal database (the same
file as the tokens, `portal.tokens.connect`: WAL, every write committed before the call returns);
`FakePortalStore` is the same code on an in-memory database, for tests.

Audit rows: ``(audit_id, ts_ms, stakeholder, token_id, action, target, outcome, detail)`` — who
(stakeholder and token id; ``cli`` for the command line), when (UTC epoch ms), what (action such
as ``goal.submit``, its target, the HTTP status or ``ok``, and a JSON detail), for every write,
accepted or refused.

Goal schedules: one row per submission, owned by the submitting stakeholder, with the signed
dispatch payload sent for it and a status: ``active`` (the group's newest dispatch),
``superseded`` (a newer schedule for the group followed), ``cancelled``, or ``failed`` (signed but
the broker did not take it).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from portal.tokens import connect

STATUSES = ("active", "superseded", "cancelled", "failed")


class ScheduleRecord:
    __slots__ = ("schedule_id", "stakeholder", "token_id", "group", "dispatch_id", "points",
                 "issued_ts_ms", "valid_until_ts_ms", "status", "published", "payload",
                 "cancelled_ts_ms", "cancel_dispatch_id")

    def __init__(self, schedule_id, stakeholder, token_id, group, dispatch_id, points, issued_ts_ms,
                 valid_until_ts_ms, status, published, payload, cancelled_ts_ms=None, cancel_dispatch_id=None):
        self.schedule_id = schedule_id
        self.stakeholder = stakeholder
        self.token_id = token_id
        self.group = group
        self.dispatch_id = dispatch_id
        self.points = [tuple(p) for p in points]
        self.issued_ts_ms = issued_ts_ms
        self.valid_until_ts_ms = valid_until_ts_ms
        self.status = status
        self.published = bool(published)
        self.payload = payload
        self.cancelled_ts_ms = cancelled_ts_ms
        self.cancel_dispatch_id = cancel_dispatch_id

    def as_dict(self) -> dict:
        return {"schedule_id": self.schedule_id, "stakeholder": self.stakeholder, "group": self.group,
                "dispatch_id": self.dispatch_id,
                "points": [{"ts_ms": ts, "goal_kw": kw} for ts, kw in self.points],
                "issued_ts_ms": self.issued_ts_ms, "valid_until_ts_ms": self.valid_until_ts_ms,
                "status": self.status, "published": self.published,
                "cancelled_ts_ms": self.cancelled_ts_ms, "cancel_dispatch_id": self.cancel_dispatch_id}


class PortalStore(Protocol):
    def audit(self, ts_ms: int, stakeholder: str, token_id: str, action: str, target: str, outcome: str,
              detail: dict | None = None) -> int: ...

    def audit_log(self, limit: int = 100, stakeholder: str | None = None) -> list[dict]: ...

    def add_schedule(self, stakeholder: str, token_id: str, group: str, dispatch_id: int, points,
                     issued_ts_ms: int, valid_until_ts_ms: int, status: str, published: bool,
                     payload: str) -> ScheduleRecord: ...

    def schedule(self, schedule_id: int) -> ScheduleRecord | None: ...

    def schedules(self, stakeholder: str | None = None, group: str | None = None) -> list[ScheduleRecord]: ...

    def set_status(self, schedule_id: int, status: str, cancelled_ts_ms: int | None = None,
                   cancel_dispatch_id: int | None = None) -> None: ...

    def next_dispatch_id(self, group: str, at_least: int) -> int:
        """A dispatch id for `group` above every one used before: max(at_least, last + 1)."""
        ...

    def last_dispatch_id(self, group: str) -> int: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    stakeholder TEXT NOT NULL,
    token_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS goal_schedule (
    schedule_id INTEGER PRIMARY KEY AUTOINCREMENT,
    stakeholder TEXT NOT NULL,
    token_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    dispatch_id INTEGER NOT NULL,
    points_json TEXT NOT NULL,
    issued_ts_ms INTEGER NOT NULL,
    valid_until_ts_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    published INTEGER NOT NULL,
    payload TEXT NOT NULL,
    cancelled_ts_ms INTEGER,
    cancel_dispatch_id INTEGER
);
CREATE INDEX IF NOT EXISTS goal_schedule_group ON goal_schedule (group_name, dispatch_id);
CREATE TABLE IF NOT EXISTS dispatch_counter (
    group_name TEXT PRIMARY KEY,
    last_dispatch_id INTEGER NOT NULL
);
"""
_SCOLS = ("schedule_id, stakeholder, token_id, group_name, dispatch_id, points_json, issued_ts_ms, "
          "valid_until_ts_ms, status, published, payload, cancelled_ts_ms, cancel_dispatch_id")


def _sched(r) -> ScheduleRecord:
    return ScheduleRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], r[10], r[11], r[12])


class SqlitePortalStore:
    """Audit log and goal schedules in SQLite; thread-safe (one connection, one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)

    def audit(self, ts_ms, stakeholder, token_id, action, target, outcome, detail=None):
        text = json.dumps(detail or {}, sort_keys=True, default=str)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit (ts_ms, stakeholder, token_id, action, target, outcome, detail_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (int(ts_ms), stakeholder, token_id, action, target, str(outcome), text))
            return int(cur.lastrowid)

    def audit_log(self, limit=100, stakeholder=None):
        sql = "SELECT audit_id, ts_ms, stakeholder, token_id, action, target, outcome, detail_json FROM audit"
        args: tuple[Any, ...] = ()
        if stakeholder is not None:
            sql += " WHERE stakeholder = ?"
            args = (stakeholder,)
        sql += " ORDER BY audit_id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, args + (int(limit),)).fetchall()
        keys = ("audit_id", "ts_ms", "stakeholder", "token_id", "action", "target", "outcome")
        return [dict(zip(keys, r[:7]), detail=json.loads(r[7])) for r in rows]

    def next_dispatch_id(self, group: str, at_least: int) -> int:
        """A dispatch id for `group` above every one this portal used: max(at_least, last + 1)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT last_dispatch_id FROM dispatch_counter WHERE group_name = ?",
                                       (group,)).fetchone()
                did = max(int(at_least), (row[0] + 1) if row else 0)
                self._db.execute("INSERT INTO dispatch_counter VALUES (?, ?) ON CONFLICT(group_name) DO UPDATE "
                                 "SET last_dispatch_id = excluded.last_dispatch_id", (group, did))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return did

    def last_dispatch_id(self, group):
        with self._lock:
            row = self._db.execute("SELECT last_dispatch_id FROM dispatch_counter WHERE group_name = ?",
                                   (group,)).fetchone()
        return int(row[0]) if row else -1

    def add_schedule(self, stakeholder, token_id, group, dispatch_id, points, issued_ts_ms, valid_until_ts_ms,
                     status, published, payload):
        if status not in STATUSES:
            raise ValueError(f"status: unknown {status!r}")
        with self._lock:
            if status == "active":
                self._db.execute("UPDATE goal_schedule SET status = 'superseded' WHERE group_name = ? "
                                 "AND status = 'active'", (group,))
            cur = self._db.execute(
                f"INSERT INTO goal_schedule ({_SCOLS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (stakeholder, token_id, group, int(dispatch_id), json.dumps([list(p) for p in points]),
                 int(issued_ts_ms), int(valid_until_ts_ms), status, int(bool(published)), payload))
            sid = int(cur.lastrowid)
        return self.schedule(sid)

    def schedule(self, schedule_id):
        with self._lock:
            r = self._db.execute(f"SELECT {_SCOLS} FROM goal_schedule WHERE schedule_id = ?",
                                 (int(schedule_id),)).fetchone()
        return None if r is None else _sched(r)

    def schedules(self, stakeholder=None, group=None):
        sql, args = f"SELECT {_SCOLS} FROM goal_schedule WHERE 1 = 1", []
        if stakeholder is not None:
            sql += " AND stakeholder = ?"
            args.append(stakeholder)
        if group is not None:
            sql += " AND group_name = ?"
            args.append(group)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY schedule_id", args).fetchall()
        return [_sched(r) for r in rows]

    def set_status(self, schedule_id, status, cancelled_ts_ms=None, cancel_dispatch_id=None):
        if status not in STATUSES:
            raise ValueError(f"status: unknown {status!r}")
        with self._lock:
            self._db.execute("UPDATE goal_schedule SET status = ?, cancelled_ts_ms = ?, cancel_dispatch_id = ? "
                             "WHERE schedule_id = ?", (status, cancelled_ts_ms, cancel_dispatch_id, int(schedule_id)))

    def close(self):
        with self._lock:
            self._db.close()


class FakePortalStore(SqlitePortalStore):
    """The same store on an in-memory database (tests)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
