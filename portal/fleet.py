"""The fleet as the controller left it: its registry (read only) and its results folder.

Sources, all written by the controller (`colorgrid controller --db PATH --out DIR`):

- the registry (`cloud/registry.py`, tables `gateway` and `command`): one row per gateway — group,
  session counter `bd_seq`, inventory (devices, tiers, capacity, parameters), online flag, UTC ms
  of its last birth and death — and the command log (every control vector published, per round
  and group, with its exact payload). `ReadOnlyRegistry` reads that schema through a read-only
  SQLite connection (the portal never writes the controller's database) and answers with cloud's
  own `GatewayRecord` / `CommandRecord`, so `cloud.registry.FakeRegistry` can stand in for it;
- `rounds.csv` in the results folder (streamed by `colorgrid controller --out DIR`, one row per
  round and group, flushed each round): per round and group the
  goal, the measured enabled kW, enabled kW per tier and the health counts (`n_live`, `n_fresh`,
  `n_missing` = stale, `n_fail_safe`).

`FleetView` joins them into the gateway digital twin and the per-group, per-tier state.
What the registry does not hold, the view does not invent: per-gateway freshness, fail-safe and
store-and-forward depth live only in the controller's memory today, so they are reported per
group (from `rounds.csv`), not per gateway.
"""
from __future__ import annotations

import csv
import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from cloud.registry import CommandRecord, GatewayRecord


class SourceError(RuntimeError):
    """A source file that cannot be read (the message names the file)."""


class RegistryReader(Protocol):
    """The read half of `cloud.registry.Registry`."""

    def gateways(self) -> list[GatewayRecord]: ...

    def commands(self, since_round_id: int = 0) -> list[CommandRecord]: ...

    def last_round_id(self) -> int: ...


class ReadOnlyRegistry:
    """The controller's SQLite registry, opened read only (`mode=ro`); safe from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such registry file")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
            names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise SourceError(f"{self.path}: not a readable SQLite database ({exc})") from None
        if not {"gateway", "command"} <= names:
            raise SourceError(f"{self.path}: not a controller registry (tables gateway/command missing)")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"{self.path}: {exc}") from None

    def gateways(self) -> list[GatewayRecord]:
        rows = self._query("SELECT gateway_id, group_name, bd_seq, inventory_json, online, birth_ts_ms, "
                           "death_ts_ms FROM gateway ORDER BY gateway_id")
        return [GatewayRecord(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    def commands(self, since_round_id: int = 0) -> list[CommandRecord]:
        rows = self._query("SELECT round_id, group_name, ts_ms, expiry_ms, payload FROM command "
                           "WHERE round_id > ? ORDER BY round_id, group_name", (int(since_round_id),))
        return [CommandRecord(*r) for r in rows]

    def last_round_id(self) -> int:
        return int(self._query("SELECT MAX(round_id) FROM command")[0][0] or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ResultsFolder:
    """A results folder: a file NAME is DIR/NAME, else the newest DIR/*/NAME (one run per subfolder)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def find(self, name: str) -> Path | None:
        if self.root is None or not self.root.is_dir():
            return None
        direct = self.root / name
        if direct.is_file():
            return direct
        found = [p for p in self.root.glob(f"*/{name}") if p.is_file()]
        return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p))) if found else None


def _number(text: str) -> Any:
    """A CSV cell as int, float, bool or the text itself (empty -> None)."""
    if text == "":
        return None
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class CsvCache:
    """CSV files read once per (mtime, size): rows as dicts of parsed cells."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, list[str], list[dict]]] = {}

    def read(self, path: Path) -> tuple[list[str], list[dict]]:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            with self._lock:
                hit = self._cache.get(str(path))
            if hit and hit[0] == stamp:
                return hit[1], hit[2]
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                columns = list(reader.fieldnames or [])
                rows = [{k: _number(v or "") for k, v in row.items() if k is not None} for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path.name}: cannot read ({exc})") from None
        with self._lock:
            self._cache[str(path)] = (stamp, columns, rows)
        return columns, rows


def _vector(cmd: CommandRecord) -> dict:
    try:
        msg = json.loads(cmd.payload)
    except ValueError:
        msg = {}
    return {"round_id": cmd.round_id, "group": cmd.group, "ts_ms": cmd.ts_ms, "expiry_ms": cmd.expiry_ms,
            "p_on": msg.get("p_on"), "p_off": msg.get("p_off"), "key_id": msg.get("key_id"),
            "issued_ts_ms": msg.get("issued_ts_ms")}


class FleetView:
    """Gateway twin, per-group per-tier state and the command log, from a registry + results folder."""

    def __init__(self, registry: RegistryReader, results: ResultsFolder | None = None,
                 csv_cache: CsvCache | None = None) -> None:
        self.registry = registry
        self.results = results or ResultsFolder(None)
        self.csv = csv_cache or CsvCache()

    # -- gateways -------------------------------------------------------------------------------
    @staticmethod
    def gateway(rec: GatewayRecord) -> dict:
        inv = rec.inventory or {}
        events = [t for t in (rec.birth_ts_ms, rec.death_ts_ms) if t is not None]
        return {"gateway_id": rec.gateway_id, "group": rec.group, "online": rec.online, "bd_seq": rec.bd_seq,
                "birth_ts_ms": rec.birth_ts_ms, "death_ts_ms": rec.death_ts_ms,
                "last_session_event_ts_ms": max(events) if events else None,
                "devices": inv.get("devices"), "tiers": inv.get("tiers"), "capacity_w": inv.get("capacity_w"),
                "params": inv.get("params", {})}

    def gateways(self, group: str | None = None) -> list[dict]:
        return [self.gateway(r) for r in self.registry.gateways() if group is None or r.group == group]

    # -- rounds.csv -------------------------------------------------------------------------------
    def latest_rounds(self) -> dict[str, dict]:
        """The last row of rounds.csv per group, tiers gathered into lists; {} without the file."""
        path = self.results.find("rounds.csv")
        if path is None:
            return {}
        columns, rows = self.csv.read(path)
        k = sum(1 for c in columns if c.startswith("enabled_t") and c.endswith("_kw"))
        latest: dict[str, dict] = {}
        for row in rows:
            g = str(row.get("group"))
            if g not in latest or (row.get("round_id") or 0) >= (latest[g].get("round_id") or 0):
                latest[g] = row
        out = {}
        for g, row in latest.items():
            out[g] = {"t_s": row.get("t_s"), "round_id": row.get("round_id"), "goal_kw": row.get("goal_kw"),
                      "goal_source": row.get("goal_source"), "measured_enabled_kw": row.get("measured_enabled_kw"),
                      "saturated": row.get("saturated"),
                      "n_live": row.get("n_live"), "n_fresh": row.get("n_fresh"), "n_missing": row.get("n_missing"),
                      "n_fail_safe": row.get("n_fail_safe"),
                      "enabled_kw": [row.get(f"enabled_t{i}_kw") for i in range(k)],
                      "p_on": [row.get(f"p_on_t{i}") for i in range(k)],
                      "p_off": [row.get(f"p_off_t{i}") for i in range(k)],
                      "file": path.name}
        return out

    # -- groups ----------------------------------------------------------------------------------
    def groups(self) -> dict[str, dict]:
        """Per group: gateways (total, online), devices, capacity, tier names, latest vector and round."""
        gws = self.registry.gateways()
        rounds = self.latest_rounds()
        last = self.registry.last_round_id()
        vectors: dict[str, dict] = {}
        for cmd in self.registry.commands(since_round_id=max(0, last - 1)):   # the newest rounds only
            vectors[cmd.group] = _vector(cmd)
        names = sorted({r.group for r in gws} | set(rounds) | set(vectors))
        out = {}
        for g in names:
            members = [r for r in gws if r.group == g]
            tiers = Counter(tuple((r.inventory or {}).get("tiers") or ()) for r in members)
            out[g] = {"group": g, "gateways": len(members), "online": sum(r.online for r in members),
                      "offline": sum(not r.online for r in members),
                      "devices": sum(int((r.inventory or {}).get("devices") or 0) for r in members),
                      "capacity_kw": sum(float((r.inventory or {}).get("capacity_w") or 0) for r in members) / 1000.0,
                      "tiers": list(tiers.most_common(1)[0][0]) if tiers else [],
                      "latest_vector": vectors.get(g), "latest_round": rounds.get(g)}
        return out

    # -- command log -----------------------------------------------------------------------------
    def commands(self, group: str | None = None, limit: int = 100, allowed=None) -> list[dict]:
        """The newest `limit` vectors (newest first), optionally one group's or the allowed groups'."""
        last = self.registry.last_round_id()
        span, found = max(limit, 1), []
        since = max(0, last - span)
        while True:
            found = [c for c in self.registry.commands(since_round_id=since)
                     if (group is None or c.group == group) and (allowed is None or allowed(c.group))]
            if len(found) >= limit or since == 0:
                break
            span *= 8
            since = max(0, last - span)
        found.sort(key=lambda c: (c.round_id, c.group), reverse=True)
        return [dict(_vector(c), payload=c.payload) for c in found[:limit]]
