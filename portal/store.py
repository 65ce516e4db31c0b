"""The portal's own records: the audit log and the goal schedules stakeholders submitted.

Contract `PortalStore`; `DbPortalStore` keeps them in the portal database (the same database as
the tokens, `portal.tokens.connect` -> `portal.db`: SQLite or PostgreSQL, migrated, every write
committed before the call returns; `SqlitePortalStore` is the same class); `FakePortalStore` is
the same code on an in-memory SQLite database, for tests.

Fleet time series (`SeriesRow`, table `fleet_series`): per group and round the goal, the
measured enabled kW, the tracking error (measured − goal), the health counts and enabled kW per
tier, at the round's UTC ms (`portal.series.SeriesRecorder` fills it; `prune` applies the
retention).

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
import math
from pathlib import Path
from typing import Any, Iterable, Protocol

from portal.db import Database
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

    def add_series(self, rows: "Iterable[SeriesRow]") -> int: ...

    def series(self, group: str | None = None, since_ts_ms: int | None = None, until_ts_ms: int | None = None,
               limit: int | None = None) -> "list[SeriesRow]": ...

    def last_series_round(self) -> dict[str, int]: ...

    def prune(self, before_ts_ms: int, audit_before_ts_ms: int | None = None) -> dict[str, int]: ...

    def close(self) -> None: ...


_SCOLS = ("schedule_id, stakeholder, token_id, group_name, dispatch_id, points_json, issued_ts_ms, "
          "valid_until_ts_ms, status, published, payload, cancelled_ts_ms, cancel_dispatch_id")


def _sched(r) -> ScheduleRecord:
    return ScheduleRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], r[10], r[11], r[12])


SERIES_COLUMNS = ("group_name", "round_id", "ts_ms", "goal_kw", "measured_enabled_kw", "tracking_error_kw",
                  "n_live", "n_fresh", "n_missing", "n_fail_safe", "saturated", "enabled_kw_json")
_FCOLS = ", ".join(SERIES_COLUMNS)


def _finite(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


class SeriesRow:
    """One group's round in the fleet time series: goal, measured enabled kW, their difference
    (`tracking_error_kw` = measured − goal), the health counts and enabled kW per tier."""

    __slots__ = ("group", "round_id", "ts_ms", "goal_kw", "measured_enabled_kw", "tracking_error_kw",
                 "n_live", "n_fresh", "n_missing", "n_fail_safe", "saturated", "enabled_kw")

    def __init__(self, group, round_id, ts_ms, goal_kw, measured_enabled_kw, n_live=None, n_fresh=None,
                 n_missing=None, n_fail_safe=None, saturated=None, enabled_kw=(), tracking_error_kw=None):
        self.group, self.round_id, self.ts_ms = str(group), int(round_id), int(ts_ms)
        self.goal_kw, self.measured_enabled_kw = _finite(goal_kw), _finite(measured_enabled_kw)
        if tracking_error_kw is None and self.goal_kw is not None and self.measured_enabled_kw is not None:
            tracking_error_kw = self.measured_enabled_kw - self.goal_kw
        self.tracking_error_kw = _finite(tracking_error_kw)
        self.n_live, self.n_fresh, self.n_missing, self.n_fail_safe = (
            None if v is None else int(v) for v in (n_live, n_fresh, n_missing, n_fail_safe))
        self.saturated = None if saturated is None else bool(saturated)
        self.enabled_kw = [_finite(v) for v in enabled_kw]

    def cells(self) -> tuple:
        return (self.group, self.round_id, self.ts_ms, self.goal_kw, self.measured_enabled_kw,
                self.tracking_error_kw, self.n_live, self.n_fresh, self.n_missing, self.n_fail_safe,
                None if self.saturated is None else int(self.saturated), json.dumps(self.enabled_kw))

    @classmethod
    def from_cells(cls, r) -> "SeriesRow":
        return cls(r[0], r[1], r[2], r[3], r[4], r[6], r[7], r[8], r[9], None if r[10] is None else bool(r[10]),
                   json.loads(r[11]), tracking_error_kw=r[5])

    def as_dict(self) -> dict:
        return {"group": self.group, "round_id": self.round_id, "ts_ms": self.ts_ms, "goal_kw": self.goal_kw,
                "measured_enabled_kw": self.measured_enabled_kw, "tracking_error_kw": self.tracking_error_kw,
                "n_live": self.n_live, "n_fresh": self.n_fresh, "n_missing": self.n_missing,
                "n_fail_safe": self.n_fail_safe, "saturated": self.saturated, "enabled_kw": list(self.enabled_kw)}


class DbPortalStore:
    """Audit log, goal schedules and the fleet time series in the portal database (SQLite or
    PostgreSQL, portal.db); thread-safe (the database's one connection behind its lock)."""

    def __init__(self, url: "str | Path | Database") -> None:
        self._db = connect(url)
        self.path = self._db.url

    def audit(self, ts_ms, stakeholder, token_id, action, target, outcome, detail=None):
        text = json.dumps(detail or {}, sort_keys=True, default=str)
        rows = self._db.execute(
            "INSERT INTO audit (ts_ms, stakeholder, token_id, action, target, outcome, detail_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING audit_id",
            (int(ts_ms), stakeholder, token_id, action, target, str(outcome), text))
        return int(rows[0][0])

    def audit_log(self, limit=100, stakeholder=None):
        sql = "SELECT audit_id, ts_ms, stakeholder, token_id, action, target, outcome, detail_json FROM audit"
        args: tuple[Any, ...] = ()
        if stakeholder is not None:
            sql += " WHERE stakeholder = ?"
            args = (stakeholder,)
        sql += " ORDER BY audit_id DESC LIMIT ?"
        rows = self._db.execute(sql, args + (int(limit),))
        keys = ("audit_id", "ts_ms", "stakeholder", "token_id", "action", "target", "outcome")
        return [dict(zip(keys, r[:7]), detail=json.loads(r[7])) for r in rows]

    def next_dispatch_id(self, group: str, at_least: int) -> int:
        """A dispatch id for `group` above every one this portal used: max(at_least, last + 1),
        in one statement (atomic on both databases, also between processes)."""
        rows = self._db.execute(
            "INSERT INTO dispatch_counter (group_name, last_dispatch_id) VALUES (?, ?) "
            "ON CONFLICT (group_name) DO UPDATE SET last_dispatch_id = CASE "
            "WHEN dispatch_counter.last_dispatch_id + 1 > excluded.last_dispatch_id "
            "THEN dispatch_counter.last_dispatch_id + 1 ELSE excluded.last_dispatch_id END "
            "RETURNING last_dispatch_id", (group, int(at_least)))
        return int(rows[0][0])

    def last_dispatch_id(self, group):
        rows = self._db.execute("SELECT last_dispatch_id FROM dispatch_counter WHERE group_name = ?", (group,))
        return int(rows[0][0]) if rows else -1

    def add_schedule(self, stakeholder, token_id, group, dispatch_id, points, issued_ts_ms, valid_until_ts_ms,
                     status, published, payload):
        if status not in STATUSES:
            raise ValueError(f"status: unknown {status!r}")
        with self._db.transaction():
            if status == "active":
                self._db.execute("UPDATE goal_schedule SET status = 'superseded' WHERE group_name = ? "
                                 "AND status = 'active'", (group,))
            rows = self._db.execute(
                f"INSERT INTO goal_schedule ({_SCOLS.split(', ', 1)[1]}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "NULL, NULL) RETURNING schedule_id",
                (stakeholder, token_id, group, int(dispatch_id), json.dumps([list(p) for p in points]),
                 int(issued_ts_ms), int(valid_until_ts_ms), status, int(bool(published)), payload))
        return self.schedule(int(rows[0][0]))

    def schedule(self, schedule_id):
        rows = self._db.execute(f"SELECT {_SCOLS} FROM goal_schedule WHERE schedule_id = ?", (int(schedule_id),))
        return _sched(rows[0]) if rows else None

    def schedules(self, stakeholder=None, group=None):
        sql, args = f"SELECT {_SCOLS} FROM goal_schedule WHERE 1 = 1", []
        if stakeholder is not None:
            sql += " AND stakeholder = ?"
            args.append(stakeholder)
        if group is not None:
            sql += " AND group_name = ?"
            args.append(group)
        rows = self._db.execute(sql + " ORDER BY schedule_id", args)
        return [_sched(r) for r in rows]

    def set_status(self, schedule_id, status, cancelled_ts_ms=None, cancel_dispatch_id=None):
        if status not in STATUSES:
            raise ValueError(f"status: unknown {status!r}")
        self._db.execute("UPDATE goal_schedule SET status = ?, cancelled_ts_ms = ?, cancel_dispatch_id = ? "
                         "WHERE schedule_id = ?", (status, cancelled_ts_ms, cancel_dispatch_id, int(schedule_id)))

    # -- fleet time series --------------------------------------------------------------------
    def add_series(self, rows) -> int:
        """Insert `SeriesRow`s (a row already there, same group and round, is kept); returns how
        many were given."""
        rows = list(rows)
        if rows:
            self._db.executemany(
                f"INSERT INTO fleet_series ({_FCOLS}) VALUES ({', '.join('?' * len(SERIES_COLUMNS))}) "
                "ON CONFLICT (group_name, round_id) DO NOTHING", [r.cells() for r in rows])
        return len(rows)

    def series(self, group=None, since_ts_ms=None, until_ts_ms=None, limit=None):
        sql, args = f"SELECT {_FCOLS} FROM fleet_series WHERE 1 = 1", []
        for cond, value in (("group_name = ?", group), ("ts_ms >= ?", since_ts_ms), ("ts_ms < ?", until_ts_ms)):
            if value is not None:
                sql += f" AND {cond}"
                args.append(value)
        sql += " ORDER BY ts_ms, group_name"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [SeriesRow.from_cells(r) for r in self._db.execute(sql, args)]

    def last_series_round(self) -> dict[str, int]:
        return {g: int(r) for g, r in self._db.execute(
            "SELECT group_name, MAX(round_id) FROM fleet_series GROUP BY group_name")}

    def prune(self, before_ts_ms: int, audit_before_ts_ms: int | None = None) -> dict[str, int]:
        """Delete series rows older than `before_ts_ms` (and audit rows older than
        `audit_before_ts_ms` when given); returns the rows deleted per table."""
        out = {"fleet_series": self._delete("fleet_series", before_ts_ms)}
        if audit_before_ts_ms is not None:
            out["audit"] = self._delete("audit", audit_before_ts_ms)
        return out

    def _delete(self, table: str, before_ts_ms: int) -> int:
        return len(self._db.execute(f"DELETE FROM {table} WHERE ts_ms < ? RETURNING 1", (int(before_ts_ms),)))

    def close(self):
        self._db.close()


SqlitePortalStore = DbPortalStore      # the name of the SQLite-only version: a path still works


class FakePortalStore(DbPortalStore):
    """The same store on an in-memory database (tests)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
