"""Where the VEN's telemetry reports come from: the achieved kW per location over a time span.

    fleet.mean_kw(location, start_ms, end_ms) -> float | None     total enabled kW (all tiers), mean
                                                                  over the rounds in [start, end)

`RoundsFleetState(path, tiers, origin_ms)` reads the controller's `rounds.csv` (`t_s` from the
clock origin, `group`, `enabled_t{i}_kw`) as it grows: it re-reads the file when its size changed.
`FakeFleetState` holds rows given by the test (or a simulator) in memory.
"""
from __future__ import annotations

import bisect
import os
import threading
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from market.vpp.yield_stats import TelemetryError, TelemetryRow, read_rounds_csv


class FleetState(Protocol):
    def mean_kw(self, location: str, start_ms: int, end_ms: int) -> float | None:
        """Mean total enabled kW of the location's rounds in [start_ms, end_ms); None without rounds."""
        ...


class _Rows:
    """Per location, time-sorted (t_ms, total kW) with a bisecting mean."""

    def __init__(self) -> None:
        self.times: dict[str, list[int]] = {}
        self.kw: dict[str, list[float]] = {}

    def set(self, rows: Iterable[TelemetryRow]) -> None:
        pairs: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            pairs.setdefault(r.location, []).append((r.t_ms, float(sum(r.enabled_kw))))
        self.times = {loc: [p[0] for p in sorted(v)] for loc, v in pairs.items()}
        self.kw = {loc: [p[1] for p in sorted(v)] for loc, v in pairs.items()}

    def mean(self, location: str, start_ms: int, end_ms: int) -> float | None:
        times = self.times.get(location)
        if not times:
            return None
        lo, hi = bisect.bisect_left(times, start_ms), bisect.bisect_left(times, end_ms)
        if hi <= lo:
            return None
        values = self.kw[location][lo:hi]
        return sum(values) / len(values)


class FakeFleetState:
    """In-memory rows (`TelemetryRow`s); `add` more as a run goes."""

    def __init__(self, rows: Iterable[TelemetryRow] = ()):
        self.rows: list[TelemetryRow] = list(rows)
        self._index = _Rows()
        self._index.set(self.rows)
        self.asked: list[tuple[str, int, int]] = []

    def add(self, rows: Iterable[TelemetryRow]) -> None:
        self.rows += list(rows)
        self._index.set(self.rows)

    def mean_kw(self, location: str, start_ms: int, end_ms: int) -> float | None:
        self.asked.append((location, start_ms, end_ms))
        return self._index.mean(location, start_ms, end_ms)


class RoundsFleetState:
    """The controller's rounds.csv, re-read when it grew (`groups` maps group ids that are not
    location ids). A file that does not exist yet reads as no rounds."""

    def __init__(self, path: str | Path, tiers: Sequence[str], origin_ms: int = 0,
                 groups: dict[str, str] | None = None):
        self.path, self.tiers, self.origin_ms, self.groups = Path(path), tuple(tiers), int(origin_ms), groups
        self._size = -1
        self._index = _Rows()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size == self._size:
            return
        try:
            rows = read_rounds_csv(self.path, self.tiers, self.origin_ms, self.groups)
        except TelemetryError:
            if self._size < 0:
                raise                     # a wrong file from the start: say so
            return                        # a line being written: keep the last good read
        self._index.set(rows)
        self._size = size

    def mean_kw(self, location: str, start_ms: int, end_ms: int) -> float | None:
        with self._lock:
            self._refresh()
            return self._index.mean(location, start_ms, end_ms)
