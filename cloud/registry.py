"""Gateway registry and command log: what the controller must not forget across a restart.

Contract `Registry` (below) with two implementations: `SqliteRegistry` (the default store, one
file, WAL journal, every write committed before the call returns) and `FakeRegistry` (in memory,
for tests). Both keep:

- the gateway registry: one row per gateway id with its control group, last birth/death counter
  `bd_seq`, inventory (device count, tier count, total kW) as JSON, `online` flag and the UTC epoch
  ms of its last birth / death;
- the command log: one row per published control vector (round id, group, ts_ms, expiry_ms, the
  exact payload text). `last_round_id()` lets a restarted controller continue round ids above every
  id it ever published, so gateways (which reject replayed or older rounds) accept its vectors.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol


class RegistryError(ValueError):
    """A registry write with an invalid field (named in the message)."""


class GatewayRecord:
    """One registered gateway (plain class: no dataclass magic needed, easy to compare)."""

    __slots__ = ("gateway_id", "group", "bd_seq", "inventory", "online", "birth_ts_ms", "death_ts_ms")

    def __init__(self, gateway_id: str, group: str, bd_seq: int, inventory: dict[str, Any],
                 online: bool, birth_ts_ms: int, death_ts_ms: int | None) -> None:
        self.gateway_id = gateway_id
        self.group = group
        self.bd_seq = bd_seq
        self.inventory = inventory
        self.online = online
        self.birth_ts_ms = birth_ts_ms
        self.death_ts_ms = death_ts_ms

    def as_tuple(self) -> tuple:
        return (self.gateway_id, self.group, self.bd_seq, json.dumps(self.inventory, sort_keys=True),
                self.online, self.birth_ts_ms, self.death_ts_ms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GatewayRecord) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return f"GatewayRecord{self.as_tuple()!r}"


class CommandRecord:
    __slots__ = ("round_id", "group", "ts_ms", "expiry_ms", "payload")

    def __init__(self, round_id: int, group: str, ts_ms: int, expiry_ms: int, payload: str) -> None:
        self.round_id = round_id
        self.group = group
        self.ts_ms = ts_ms
        self.expiry_ms = expiry_ms
        self.payload = payload

    def as_tuple(self) -> tuple:
        return (self.round_id, self.group, self.ts_ms, self.expiry_ms, self.payload)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CommandRecord) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return f"CommandRecord{self.as_tuple()!r}"


class Registry(Protocol):
    def record_birth(self, gateway_id: str, group: str, bd_seq: int, inventory: dict[str, Any],
                     ts_ms: int) -> None: ...

    def record_death(self, gateway_id: str, bd_seq: int, ts_ms: int) -> bool: ...

    def gateways(self) -> list[GatewayRecord]: ...

    def log_command(self, round_id: int, group: str, ts_ms: int, expiry_ms: int, payload: str) -> None: ...

    def commands(self, since_round_id: int = 0) -> list[CommandRecord]: ...

    def last_round_id(self) -> int: ...

    def close(self) -> None: ...


def _check(gateway_id: str, bd_seq: int, ts_ms: int) -> None:
    if not isinstance(gateway_id, str) or not gateway_id:
        raise RegistryError(f"gateway_id: expected a non-empty string, got {gateway_id!r}")
    if not isinstance(bd_seq, int) or isinstance(bd_seq, bool) or not 0 <= bd_seq <= 255:
        raise RegistryError(f"bd_seq: expected an int in 0..255, got {bd_seq!r}")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool) or ts_ms < 0:
        raise RegistryError(f"ts_ms: expected a non-negative int (UTC epoch ms), got {ts_ms!r}")


def _check_command(round_id: int, group: str, ts_ms: int, expiry_ms: int) -> None:
    if not isinstance(round_id, int) or isinstance(round_id, bool) or round_id < 1:
        raise RegistryError(f"round_id: expected a positive int, got {round_id!r}")
    if not isinstance(group, str) or not group:
        raise RegistryError(f"group: expected a non-empty string, got {group!r}")
    if not isinstance(expiry_ms, int) or expiry_ms < ts_ms:
        raise RegistryError(f"expiry_ms: expected an int >= ts_ms, got {expiry_ms!r}")


class FakeRegistry:
    """In-memory registry with the same behaviour as `SqliteRegistry` (tests, --db :memory:)."""

    def __init__(self) -> None:
        self._gateways: dict[str, GatewayRecord] = {}
        self._commands: dict[tuple[int, str], CommandRecord] = {}

    def record_birth(self, gateway_id, group, bd_seq, inventory, ts_ms):
        _check(gateway_id, bd_seq, ts_ms)
        self._gateways[gateway_id] = GatewayRecord(gateway_id, group, bd_seq, dict(inventory), True, ts_ms, None)

    def record_death(self, gateway_id, bd_seq, ts_ms):
        """Mark offline when `bd_seq` matches the current session; a stale death returns False."""
        _check(gateway_id, bd_seq, ts_ms)
        rec = self._gateways.get(gateway_id)
        if rec is None or rec.bd_seq != bd_seq:
            return False
        rec.online = False
        rec.death_ts_ms = ts_ms
        return True

    def gateways(self):
        return [self._gateways[k] for k in sorted(self._gateways)]

    def log_command(self, round_id, group, ts_ms, expiry_ms, payload):
        _check_command(round_id, group, ts_ms, expiry_ms)
        self._commands[(round_id, group)] = CommandRecord(round_id, group, ts_ms, expiry_ms, payload)

    def commands(self, since_round_id=0):
        return [self._commands[k] for k in sorted(self._commands) if k[0] > since_round_id]

    def last_round_id(self):
        return max((k[0] for k in self._commands), default=0)

    def close(self):
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway (
    gateway_id TEXT PRIMARY KEY,
    group_name TEXT NOT NULL,
    bd_seq INTEGER NOT NULL,
    inventory_json TEXT NOT NULL,
    online INTEGER NOT NULL,
    birth_ts_ms INTEGER NOT NULL,
    death_ts_ms INTEGER
);
CREATE TABLE IF NOT EXISTS command (
    round_id INTEGER NOT NULL,
    group_name TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    expiry_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (round_id, group_name)
);
"""


class SqliteRegistry:
    """SQLite-backed registry; safe to call from several threads (one lock, one connection).

    Every write commits immediately, so a controller killed with SIGKILL loses at most the write
    in progress. Round ids are stored per group; `last_round_id()` is the maximum over groups.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def record_birth(self, gateway_id, group, bd_seq, inventory, ts_ms):
        _check(gateway_id, bd_seq, ts_ms)
        inv = json.dumps(inventory, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT INTO gateway VALUES (?, ?, ?, ?, 1, ?, NULL) ON CONFLICT(gateway_id) DO UPDATE SET "
                "group_name=excluded.group_name, bd_seq=excluded.bd_seq, inventory_json=excluded.inventory_json, "
                "online=1, birth_ts_ms=excluded.birth_ts_ms, death_ts_ms=NULL",
                (gateway_id, group, bd_seq, inv, ts_ms))

    def record_death(self, gateway_id, bd_seq, ts_ms):
        _check(gateway_id, bd_seq, ts_ms)
        with self._lock:
            cur = self._db.execute(
                "UPDATE gateway SET online=0, death_ts_ms=? WHERE gateway_id=? AND bd_seq=?",
                (ts_ms, gateway_id, bd_seq))
            return cur.rowcount == 1

    def gateways(self):
        with self._lock:
            rows = self._db.execute(
                "SELECT gateway_id, group_name, bd_seq, inventory_json, online, birth_ts_ms, death_ts_ms "
                "FROM gateway ORDER BY gateway_id").fetchall()
        return [GatewayRecord(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    def log_command(self, round_id, group, ts_ms, expiry_ms, payload):
        _check_command(round_id, group, ts_ms, expiry_ms)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO command VALUES (?, ?, ?, ?, ?)",
                             (round_id, group, ts_ms, expiry_ms, payload))

    def commands(self, since_round_id=0):
        with self._lock:
            rows = self._db.execute(
                "SELECT round_id, group_name, ts_ms, expiry_ms, payload FROM command WHERE round_id > ? "
                "ORDER BY round_id, group_name", (since_round_id,)).fetchall()
        return [CommandRecord(*r) for r in rows]

    def last_round_id(self):
        with self._lock:
            row = self._db.execute("SELECT MAX(round_id) FROM command").fetchone()
        return int(row[0] or 0)

    def close(self):
        with self._lock:
            self._db.close()


def open_registry(db: str | None) -> SqliteRegistry | FakeRegistry:
    """`None` or ':memory:' → in-memory; otherwise a SQLite file at `db` (parent folders created)."""
    if db is None or db == ":memory:":
        return FakeRegistry()
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    return SqliteRegistry(db)
