"""The fleet time series in the portal store, and its retention.

`SeriesRecorder.record()` copies the rounds the controller appended to `rounds.csv` since the
last call (`FleetView.rounds_log`, followed incrementally) into the store's `fleet_series`
(`portal.store.SeriesRow`: goal, measured enabled kW, tracking error = measured − goal, health
counts, enabled kW per tier) at the round's UTC ms: the time the registry's command log gives
the group's vector of that round; a round without one (no vector sent) is timed from
`rounds.csv`'s `t_s` (seconds since the controller started) anchored on the newest round present
in both (`ts_ms = anchor_ts_ms + (t_s − anchor_t_s) · 1000`). Rounds before the first anchor wait.
Rows already stored (same group and round) are not written twice, also after a restart
(`last_series_round`).

`Retention(series_days, audit_days)`: `prune(now_ms)` deletes series rows older than
`series_days` (and audit rows older than `audit_days`, if set). `SeriesJob` runs both on a
thread every `every_s` seconds with the clock it is given, so tests drive it with a simulated
clock (`step(now_ms)`).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from portal.fleet import FleetView, SourceError
from portal.store import PortalStore, SeriesRow

log = logging.getLogger("portal.series")
DAY_MS = 86_400_000


class SeriesRecorder:
    def __init__(self, fleet: FleetView, store: PortalStore) -> None:
        self.fleet, self.store = fleet, store
        self._last = store.last_series_round()        # group -> newest round stored
        self._anchor: tuple[float, int] | None = None  # (t_s, ts_ms) of one round

    def _find_anchor(self, rows: dict[str, list[dict]]) -> None:
        """The newest round of `rows` whose vector the command log holds (the previous anchor
        when these rows have none)."""
        by_round = {}
        for cmd in self.fleet.registry.commands(since_round_id=max(0, self.fleet.registry.last_round_id() - 50)):
            by_round[(cmd.round_id, cmd.group)] = cmd.ts_ms
        best = self._anchor
        for g, series in rows.items():
            for r in series:
                ts = by_round.get((r.get("round_id"), g))
                if ts is not None and isinstance(r.get("t_s"), (int, float)) and (best is None or ts > best[1]):
                    best = (float(r["t_s"]), int(ts))
        if best is not None:
            self._anchor = best

    def record(self) -> int:
        """Store the rounds appended since the last call; returns how many rows were stored."""
        path = self.fleet.results.find("rounds.csv")
        if path is None:
            return 0
        columns, rows = self.fleet.rounds_log.read(path)
        k = sum(1 for c in columns if c.startswith("enabled_t") and c.endswith("_kw"))
        new = {g: [r for r in series if isinstance(r.get("round_id"), int) and r["round_id"] > self._last.get(g, -1)]
               for g, series in rows.items()}
        if not any(new.values()):
            return 0
        first = min(r["round_id"] for series in new.values() for r in series)
        sent = {(c.round_id, c.group): c.ts_ms for c in self.fleet.registry.commands(since_round_id=first - 1)}
        self._find_anchor(new)
        if self._anchor is None:
            return 0
        t0, ts0 = self._anchor
        out = []
        for g, series in new.items():
            for r in series:
                if not isinstance(r.get("t_s"), (int, float)):
                    continue
                ts = sent.get((r["round_id"], g))      # exact where the round's vector was logged
                if ts is None:
                    ts = ts0 + round((r["t_s"] - t0) * 1000)
                out.append(SeriesRow(g, r["round_id"], ts, r.get("goal_kw"),
                                     r.get("measured_enabled_kw"), r.get("n_live"), r.get("n_fresh"),
                                     r.get("n_missing"), r.get("n_fail_safe"), r.get("saturated"),
                                     [r.get(f"enabled_t{i}_kw") for i in range(k)]))
        self.store.add_series(out)
        for row in out:
            self._last[row.group] = max(self._last.get(row.group, -1), row.round_id)
        return len(out)


class Retention:
    """How long the store keeps the fleet series and the audit log (days; None = for ever)."""

    def __init__(self, series_days: float | None = 30.0, audit_days: float | None = None) -> None:
        for name, v in (("series_days", series_days), ("audit_days", audit_days)):
            if v is not None and not v > 0:
                raise ValueError(f"{name}: expected days > 0, got {v!r}")
        self.series_days, self.audit_days = series_days, audit_days

    def prune(self, store: PortalStore, now_ms: int) -> dict[str, int]:
        if self.series_days is None and self.audit_days is None:
            return {}
        series_before = now_ms - int(self.series_days * DAY_MS) if self.series_days is not None else -1
        audit_before = now_ms - int(self.audit_days * DAY_MS) if self.audit_days is not None else None
        return store.prune(series_before, audit_before)


class SeriesJob:
    """Record + prune every `every_s` seconds on a daemon thread (`start`/`stop`), or one `step`."""

    def __init__(self, recorder: SeriesRecorder | None, store: PortalStore, retention: Retention,
                 clock: Callable[[], int], every_s: float = 2.0, prune_every_s: float = 60.0) -> None:
        self.recorder, self.store, self.retention, self.clock = recorder, store, retention, clock
        self.every_s, self.prune_every_ms = every_s, int(prune_every_s * 1000)
        self._next_prune_ms: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recorded = 0
        self.pruned: dict[str, int] = {}

    def step(self, now_ms: int | None = None) -> None:
        now = self.clock() if now_ms is None else now_ms
        if self.recorder is not None:
            try:
                self.recorded += self.recorder.record()
            except SourceError as exc:
                log.warning("series: %s", exc)
        if self._next_prune_ms is None or now >= self._next_prune_ms:
            for table, n in self.retention.prune(self.store, now).items():
                self.pruned[table] = self.pruned.get(table, 0) + n
            self._next_prune_ms = now + self.prune_every_ms

    def _main(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.step()
            except Exception:            # a store hiccup must not end the recording
                log.exception("series job")

    def start(self) -> "SeriesJob":
        self._thread = threading.Thread(target=self._main, name="portal-series", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
