"""`SqliteYieldStore`: the default, persistent `market.vpp.store.YieldStore` (one SQLite file, WAL,
every write committed). `SqliteYieldStore(":memory:")` for a throw-away store."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

from market.vpp.store import Bucket, DispatchRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS availability (
    location TEXT NOT NULL, tier TEXT NOT NULL, start_ms INTEGER NOT NULL, hour INTEGER NOT NULL,
    sum_kw REAL NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (location, tier, start_ms));
CREATE INDEX IF NOT EXISTS availability_hour ON availability (location, tier, hour);
CREATE TABLE IF NOT EXISTS last_shed (
    location TEXT NOT NULL, tier TEXT NOT NULL, t_ms INTEGER NOT NULL, PRIMARY KEY (location, tier));
CREATE TABLE IF NOT EXISTS dispatch (
    location TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
    baseline_kw REAL NOT NULL, goal_kw REAL NOT NULL,
    delivered_sum_kw REAL NOT NULL DEFAULT 0, delivered_n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (location, start_ms));
"""


class SqliteYieldStore:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def add_buckets(self, buckets: Iterable[Bucket]) -> None:
        rows = [(b.location, b.tier, int(b.start_ms), int(b.start_ms // 3_600_000) % 24, float(b.sum_kw), int(b.n))
                for b in buckets]
        with self._db:
            self._db.executemany(
                "INSERT INTO availability VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (location, tier, start_ms) "
                "DO UPDATE SET sum_kw = sum_kw + excluded.sum_kw, n = n + excluded.n", rows)

    def bucket_means(self, location: str, tier: str, hours: Iterable[int]) -> list[float]:
        hours = sorted(set(int(h) for h in hours))
        if not hours:
            return []
        marks = ",".join("?" * len(hours))
        cur = self._db.execute(
            f"SELECT sum_kw / n FROM availability WHERE location = ? AND tier = ? AND hour IN ({marks}) "
            "ORDER BY start_ms", (location, tier, *hours))
        return [r[0] for r in cur]

    def last_shed_ms(self, location: str, tier: str) -> int | None:
        row = self._db.execute("SELECT t_ms FROM last_shed WHERE location = ? AND tier = ?",
                               (location, tier)).fetchone()
        return None if row is None else int(row[0])

    def set_last_shed_ms(self, location: str, tier: str, t_ms: int) -> None:
        with self._db:
            self._db.execute("INSERT INTO last_shed VALUES (?, ?, ?) ON CONFLICT (location, tier) "
                             "DO UPDATE SET t_ms = excluded.t_ms", (location, tier, int(t_ms)))

    def add_dispatch(self, record: DispatchRecord) -> None:
        r = record
        with self._db:
            self._db.execute(
                "INSERT INTO dispatch (location, start_ms, end_ms, baseline_kw, goal_kw) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (location, start_ms) DO UPDATE SET end_ms = excluded.end_ms, "
                "baseline_kw = excluded.baseline_kw, goal_kw = excluded.goal_kw",
                (r.location, int(r.start_ms), int(r.end_ms), float(r.baseline_kw), float(r.goal_kw)))

    def add_delivered(self, location: str, start_ms: int, sum_kw: float, n: int) -> None:
        with self._db:
            cur = self._db.execute(
                "UPDATE dispatch SET delivered_sum_kw = delivered_sum_kw + ?, delivered_n = delivered_n + ? "
                "WHERE location = ? AND start_ms = ?", (float(sum_kw), int(n), location, int(start_ms)))
            if cur.rowcount != 1:
                raise KeyError(f"no dispatch record for {location} at {start_ms}")

    def dispatches(self, location: str | None = None) -> list[DispatchRecord]:
        q = "SELECT location, start_ms, end_ms, baseline_kw, goal_kw, delivered_sum_kw, delivered_n FROM dispatch"
        args: tuple = ()
        if location is not None:
            q, args = q + " WHERE location = ?", (location,)
        return [DispatchRecord(*row) for row in self._db.execute(q + " ORDER BY location, start_ms", args)]
