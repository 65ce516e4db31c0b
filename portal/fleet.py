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
store-and-forward depth live only in the controller's memory, so they are reported per gateway
(`live` in the twin) only when the controller runs in the same process (`colorgrid serve --demo`,
`portal.live.ControllerProbe`), else per group (from `rounds.csv`).

Gateway health (`HEALTH`), from what the registry can tell:

- `offline`: its last session event is a death (Last Will or clean shutdown);
- `stale`: its registry row says online, but its group's newest control vector has expired
  (`expiry_ms`, issue time + 3 rounds) or its group never got one: the controller is not
  controlling it now (stopped, or the group has no fresh reports), so the online flag is not
  current and the gateway holds or goes fail-safe;
- `online`: online, and a vector for its group is in force.

`rounds.csv` is followed incrementally (`RoundsLog`): only the bytes appended since the last read
are parsed, and the newest `MAX_SERIES_ROUNDS` rows per group are kept for the time series.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Protocol

from cloud.registry import CommandRecord, GatewayRecord
from portal.files import (MAX_SERIES_ROUNDS, CsvCache, ResultsFolder, RoundsLog,  # noqa: F401
                          SourceError, _number)


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
        """Every gateway; parsed once per change of the database (SQLite's `data_version` moves
        when another connection commits), so many readers between two rounds share one parse."""
        with self._lock:
            cached = getattr(self, "_gateways", None)
        version = self.version()
        if cached is not None and cached[0] == version:
            return list(cached[1])
        rows = self._query("SELECT gateway_id, group_name, bd_seq, inventory_json, online, birth_ts_ms, "
                           "death_ts_ms FROM gateway ORDER BY gateway_id")
        out = [GatewayRecord(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6]) for r in rows]
        with self._lock:
            self._gateways = (version, out)
        return list(out)

    def commands(self, since_round_id: int = 0) -> list[CommandRecord]:
        rows = self._query("SELECT round_id, group_name, ts_ms, expiry_ms, payload FROM command "
                           "WHERE round_id > ? ORDER BY round_id, group_name", (int(since_round_id),))
        return [CommandRecord(*r) for r in rows]

    def last_round_id(self) -> int:
        return int(self._query("SELECT MAX(round_id) FROM command")[0][0] or 0)

    def version(self) -> int:
        """SQLite's `data_version`: changes whenever another connection (the controller) commits."""
        return int(self._query("PRAGMA data_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


HEALTH = ("online", "stale", "offline")


def _tiers_of(columns: list[str]) -> int:
    return sum(1 for c in columns if c.startswith("enabled_t") and c.endswith("_kw"))


def _vector(cmd: CommandRecord) -> dict:
    try:
        msg = json.loads(cmd.payload)
    except ValueError:
        msg = {}
    return {"round_id": cmd.round_id, "group": cmd.group, "ts_ms": cmd.ts_ms, "expiry_ms": cmd.expiry_ms,
            "p_on": msg.get("p_on"), "p_off": msg.get("p_off"), "key_id": msg.get("key_id"),
            "issued_ts_ms": msg.get("issued_ts_ms")}


def _health(online: bool, vector: dict | None, now_ms: int) -> str:
    if not online:
        return "offline"
    if vector is None or vector.get("expiry_ms") is None or now_ms > vector["expiry_ms"]:
        return "stale"
    return "online"


class FleetView:
    """Gateway twin, per-group per-tier state and the command log, from a registry + results folder."""

    def __init__(self, registry: RegistryReader, results: ResultsFolder | None = None,
                 rounds_log: RoundsLog | None = None, live=None) -> None:
        self.registry = registry
        self.results = results or ResultsFolder(None)
        self.rounds_log = rounds_log or RoundsLog()
        self.live = live            # portal.live.LiveController: the controller in this process, or None

    # -- gateways -------------------------------------------------------------------------------
    @staticmethod
    def gateway(rec: GatewayRecord, vector: dict | None = None, now_ms: int | None = None) -> dict:
        """The twin of one gateway; `health` (module docstring) when `now_ms` is given, from the
        newest vector of its group (`vector`, None if it never got one)."""
        inv = rec.inventory or {}
        events = [t for t in (rec.birth_ts_ms, rec.death_ts_ms) if t is not None]
        out = {"gateway_id": rec.gateway_id, "group": rec.group, "online": rec.online, "bd_seq": rec.bd_seq,
               "birth_ts_ms": rec.birth_ts_ms, "death_ts_ms": rec.death_ts_ms,
               "last_session_event_ts_ms": max(events) if events else None,
               "devices": inv.get("devices"), "tiers": inv.get("tiers"), "capacity_w": inv.get("capacity_w"),
               "params": inv.get("params", {})}
        if now_ms is not None:
            out["health"] = _health(rec.online, vector, now_ms)
            out["vector_round_id"] = vector["round_id"] if vector else None
            out["vector_expiry_ms"] = vector["expiry_ms"] if vector else None
        return out

    def latest_vectors(self) -> dict[str, dict]:
        """The newest control vector per group, from the last two rounds of the command log (the
        controller commits a round's vectors group by group: while the newest round is being
        written, the other groups' newest vector is the round before's)."""
        last = self.registry.last_round_id()
        vectors: dict[str, dict] = {}
        for cmd in self.registry.commands(since_round_id=max(0, last - 2)):
            vectors[cmd.group] = _vector(cmd)
        return vectors

    def gateways(self, group: str | None = None, now_ms: int | None = None) -> list[dict]:
        vectors = self.latest_vectors() if now_ms is not None else {}
        out = [self.gateway(r, vectors.get(r.group), now_ms) for r in self.registry.gateways()
               if group is None or r.group == group]
        if self.live is not None and now_ms is not None:
            status = self.live.gateway_status(now_ms)
            for g in out:                       # freshness, fail-safe, store-and-forward depth
                g["live"] = status.get(g["gateway_id"])
        return out

    def live_states(self, now_ms: int) -> dict[str, dict[str, int]]:
        """Per group the gateways per live state (portal.live.LIVE_STATES); {} without a live controller."""
        if self.live is None:
            return {}
        from portal.live import LIVE_STATES

        out: dict[str, dict[str, int]] = {}
        for s in self.live.gateway_status(now_ms).values():
            if s.get("group") is None:
                continue
            row = out.setdefault(s["group"], dict.fromkeys(LIVE_STATES, 0))
            row[s["state"]] += 1
        return out

    # -- rounds.csv -------------------------------------------------------------------------------
    def round_series(self, limit: int = 300) -> dict[str, dict]:
        """Per group the newest `limit` rounds of rounds.csv as columns (oldest first): `t_s`,
        `round_id`, `goal_kw`, `measured_enabled_kw`, `enabled_kw` (one list per tier),
        `saturated`, `n_fresh`, `n_missing`, `n_fail_safe`; {} without the file."""
        path = self.results.find("rounds.csv")
        if path is None:
            return {}
        columns, rows = self.rounds_log.read(path, limit)
        k = _tiers_of(columns)
        out = {}
        for g, series in rows.items():
            out[g] = {"group": g, "rounds": len(series), "file": path.name,
                      **{c: [r.get(c) for r in series] for c in
                         ("t_s", "round_id", "goal_kw", "measured_enabled_kw", "saturated",
                          "n_fresh", "n_missing", "n_fail_safe")},
                      "enabled_kw": [[r.get(f"enabled_t{i}_kw") for r in series] for i in range(k)]}
        return out

    def latest_rounds(self) -> dict[str, dict]:
        """The last row of rounds.csv per group, tiers gathered into lists; {} without the file."""
        path = self.results.find("rounds.csv")
        if path is None:
            return {}
        columns, latest = self.rounds_log.latest(path)
        k = _tiers_of(columns)
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
    def _stamp(self):
        """What the per-group state is a function of: the registry's data version and rounds.csv's
        identity and size; None when the registry cannot tell (FakeRegistry: no caching)."""
        version = getattr(self.registry, "version", None)
        if version is None:
            return None
        path = self.results.find("rounds.csv")
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        return (version(), str(path), st and (st.st_ino, st.st_size, st.st_mtime_ns))

    def _group_base(self) -> dict[str, dict]:
        """Per group what does not depend on the time asked: computed once per change of the
        sources (`_stamp`), so many readers between two rounds share one computation."""
        stamp = self._stamp()
        cached = getattr(self, "_base", None)
        if stamp is not None and cached is not None and cached[0] == stamp:
            return cached[1]
        gws = self.registry.gateways()
        rounds = self.latest_rounds()
        vectors = self.latest_vectors()
        members: dict[str, list] = {}
        for r in gws:
            members.setdefault(r.group, []).append(r)
        out = {}
        for g in sorted(set(members) | set(rounds) | set(vectors)):
            group_members = members.get(g, [])
            tiers = Counter(tuple((r.inventory or {}).get("tiers") or ()) for r in group_members)
            online = sum(r.online for r in group_members)
            out[g] = {"group": g, "gateways": len(group_members), "online": online,
                      "offline": len(group_members) - online,
                      "devices": sum(int((r.inventory or {}).get("devices") or 0) for r in group_members),
                      "capacity_kw": sum(float((r.inventory or {}).get("capacity_w") or 0)
                                         for r in group_members) / 1000.0,
                      "tiers": list(tiers.most_common(1)[0][0]) if tiers else [],
                      "latest_vector": vectors.get(g), "latest_round": rounds.get(g)}
        if stamp is not None:
            self._base = (stamp, out)
        return out

    def base_stamp(self):
        """The stamp of the sources the last `groups` call answered from (None: not cached)."""
        cached = getattr(self, "_base", None)
        return cached[0] if cached is not None else None

    def groups(self, now_ms: int | None = None) -> dict[str, dict]:
        """Per group: gateways (total, online), devices, capacity, tier names, latest vector and
        round; with `now_ms` also `health` (gateways per HEALTH state: `_health` of each member,
        which for a group is its online members online or stale as its vector is in force or
        not) and `vector_in_force`."""
        out = {}
        for g, base in self._group_base().items():
            row = dict(base)
            if now_ms is not None:
                vector = base["latest_vector"]
                in_force = bool(vector) and vector.get("expiry_ms") is not None and now_ms <= vector["expiry_ms"]
                row["health"] = {"online": base["online"] if in_force else 0,
                                 "stale": 0 if in_force else base["online"], "offline": base["offline"]}
                row["vector_in_force"] = in_force
                row = {k: row[k] for k in ("group", "gateways", "online", "offline", "health", "vector_in_force",
                                           "devices", "capacity_kw", "tiers", "latest_vector", "latest_round")}
            out[g] = row
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
