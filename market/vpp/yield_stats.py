"""Yield statistics from fleet telemetry: how much of each tier is enabled (so can be shed) at each
hour of the day, and how much of what was dispatched was delivered.

Telemetry is one `TelemetryRow` per (round, control group): the location (group id = location id),
UTC epoch ms, the enabled kW per tier and whether each tier was being shed (p_off > `SHED_P_OFF` in
the vector of that round). Two readers make rows from files:

- `read_rounds_csv(path, tiers, origin_ms)`: the controller's `rounds.csv` (`t_s` from the clock
  origin, `group`, `enabled_t{i}_kw`, `p_off_t{i}`);
- `read_timeseries_csv(path, tiers, origin_ms)`: `colorgrid simulate --out`'s `timeseries.csv`
  (`t_s`, `group`, `enabled_<tier>_kw`, `p_off_<tier>`).

`YieldStats(store).ingest(rows)` updates the store as telemetry arrives:

- **availability**: a tier's enabled kW counts as available flexibility only in rounds where no
  shedding of that tier can still be in effect: no p_off > 0 for the tier at the location for the
  last `settle_s` (default 180 s + one round: the longest disabled-refractory time T_DF + T_DV;
  demand shed earlier is back). Such kW are averaged per `bucket_s` (60 s) bucket. The black tier
  is never shed: every row counts.
- **response**: rows inside a recorded dispatch interval (`record_dispatch`) add to its delivered
  enabled kW.

Queries: `available_kw(location, tier, hours, confidence)` is the (1 − confidence) quantile of the
bucket means in those hours of day (P90 of availability: the kW there in 90 % of the buckets;
numpy's linear interpolation between order statistics), `expected_kw` their mean, and
`response_ratio(location)` = Σ delivered reduction · duration / Σ requested reduction · duration
over past dispatches with telemetry.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from market.vpp.store import Bucket, DispatchRecord, YieldStore
from vocab.location import LocationError, normalize

SHED_P_OFF = 1e-6     # p_off above this means shedding (the law's rounding leaves ~1e-16 when it sheds nothing)
SETTLE_S = 181.0       # T_DF + T_DV (120 + 60 s) + a 1-s margin: after this, shed demand is back
BUCKET_S = 60.0


class TelemetryError(ValueError):
    """A telemetry file or row that cannot be read (message names the file line or field)."""


@dataclass(frozen=True)
class TelemetryRow:
    location: str
    t_ms: int
    enabled_kw: tuple[float, ...]      # per tier, shed order (black last)
    shedding: tuple[bool, ...]         # per tier: p_off > 0 in this round's vector


def _location(group: str, where: str, groups: dict[str, str] | None) -> str:
    if groups is not None:
        if group not in groups:
            raise TelemetryError(f"{where}: group {group!r} has no location (known: {sorted(groups)})")
        group = groups[group]
    try:
        return normalize(group)
    except LocationError as exc:
        raise TelemetryError(f"{where}: group {group!r} is not a location id ({exc})") from None


def _read(path: str | Path, enabled_cols: Sequence[str], p_off_cols: Sequence[str], origin_ms: int,
          groups: dict[str, str] | None) -> list[TelemetryRow]:
    rows: list[TelemetryRow] = []
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("t_s", "group", *enabled_cols, *p_off_cols) if c not in (reader.fieldnames or [])]
        if missing:
            raise TelemetryError(f"{path}: missing column(s) {', '.join(missing)}")
        for n, rec in enumerate(reader, start=2):
            where = f"{path} line {n}"
            try:
                t_s = float(rec["t_s"])
                enabled = tuple(float(rec[c]) for c in enabled_cols)
                p_off = tuple(float(rec[c]) for c in p_off_cols)
            except (TypeError, ValueError):
                raise TelemetryError(f"{where}: t_s, enabled kW and p_off must be numbers") from None
            if not all(math.isfinite(v) for v in (t_s, *enabled, *p_off)):
                raise TelemetryError(f"{where}: non-finite value")
            rows.append(TelemetryRow(_location(rec["group"], where, groups), origin_ms + int(round(t_s * 1000)),
                                     enabled, tuple(p > SHED_P_OFF for p in p_off)))
    return rows


def read_rounds_csv(path: str | Path, tiers: Sequence[str], origin_ms: int = 0,
                    groups: dict[str, str] | None = None) -> list[TelemetryRow]:
    """Rows of the controller's rounds.csv; `groups` maps group ids that are not location ids."""
    k = len(tiers)
    return _read(path, [f"enabled_t{i}_kw" for i in range(k)], [f"p_off_t{i}" for i in range(k)],
                 origin_ms, groups)


def read_timeseries_csv(path: str | Path, tiers: Sequence[str], origin_ms: int = 0,
                        groups: dict[str, str] | None = None) -> list[TelemetryRow]:
    """Rows of a simulator run's timeseries.csv (`t_s` from the run start = `origin_ms`)."""
    return _read(path, [f"enabled_{t}_kw" for t in tiers], [f"p_off_{t}" for t in tiers], origin_ms, groups)


def hours_of(start_ms: int, end_ms: int) -> list[int]:
    """UTC hours of day that the interval [start_ms, end_ms) touches."""
    first, last = start_ms // 3_600_000, (end_ms - 1) // 3_600_000
    return sorted({int(h) % 24 for h in range(int(first), int(last) + 1)})


class YieldStats:
    """Yield statistics over a `YieldStore` (see the module docstring)."""

    def __init__(self, store: YieldStore, tiers: Sequence[str], settle_s: float = SETTLE_S,
                 bucket_s: float = BUCKET_S):
        self.store, self.tiers = store, tuple(tiers)
        self.settle_ms, self.bucket_ms = int(round(settle_s * 1000)), int(round(bucket_s * 1000))
        if self.bucket_ms <= 0 or self.settle_ms < 0:
            raise ValueError("bucket_s must be > 0 and settle_s >= 0")

    def record_dispatch(self, record: DispatchRecord) -> None:
        self.store.add_dispatch(record)

    def ingest(self, rows: Iterable[TelemetryRow]) -> int:
        """Add telemetry rows (any order; each location's rows are taken in time order).
        Returns the number of (row, tier) samples counted as availability."""
        by_loc: dict[str, list[TelemetryRow]] = {}
        for r in rows:
            if len(r.enabled_kw) != len(self.tiers) or len(r.shedding) != len(self.tiers):
                raise TelemetryError(f"{r.location} at {r.t_ms}: {len(r.enabled_kw)} tiers, expected {len(self.tiers)}")
            by_loc.setdefault(r.location, []).append(r)
        counted = 0
        for loc, loc_rows in by_loc.items():
            loc_rows.sort(key=lambda r: r.t_ms)
            counted += self._ingest_location(loc, loc_rows)
        return counted

    def _ingest_location(self, loc: str, rows: list[TelemetryRow]) -> int:
        black = len(self.tiers) - 1
        last = [self.store.last_shed_ms(loc, t) for t in self.tiers]
        sums: dict[tuple[str, int], list[float]] = {}
        windows = [(d.start_ms, d.end_ms) for d in self.store.dispatches(loc)]
        delivered: dict[int, list[float]] = {}
        counted = 0
        for r in rows:
            for i, tier in enumerate(self.tiers):
                if r.shedding[i] and i != black:
                    last[i] = r.t_ms
                    continue
                if i != black and last[i] is not None and r.t_ms - last[i] < self.settle_ms:
                    continue
                acc = sums.setdefault((tier, r.t_ms // self.bucket_ms * self.bucket_ms), [0.0, 0])
                acc[0] += r.enabled_kw[i]
                acc[1] += 1
                counted += 1
            for start, end in windows:
                if start <= r.t_ms < end:
                    acc = delivered.setdefault(start, [0.0, 0])
                    acc[0] += sum(r.enabled_kw)
                    acc[1] += 1
        self.store.add_buckets(Bucket(loc, tier, start, s, n) for (tier, start), (s, n) in sorted(sums.items()))
        for i, tier in enumerate(self.tiers):
            if last[i] is not None and last[i] != self.store.last_shed_ms(loc, tier):
                self.store.set_last_shed_ms(loc, tier, last[i])
        for start, (s, n) in sorted(delivered.items()):
            self.store.add_delivered(loc, start, s, n)
        return counted

    def samples_kw(self, location: str, tier: str, hours: Iterable[int]) -> np.ndarray:
        return np.asarray(self.store.bucket_means(location, tier, hours), dtype=float)

    def available_kw(self, location: str, tier: str, hours: Iterable[int], confidence: float) -> float | None:
        """kW of `tier` enabled at `location` in a share `confidence` of the buckets of those hours;
        None without samples."""
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence: expected a fraction in [0, 1], got {confidence!r}")
        x = self.samples_kw(location, tier, hours)
        return None if x.size == 0 else float(np.quantile(x, 1.0 - confidence))

    def expected_kw(self, location: str, tier: str, hours: Iterable[int]) -> float | None:
        x = self.samples_kw(location, tier, hours)
        return None if x.size == 0 else float(x.mean())

    def response_ratio(self, location: str) -> float | None:
        """Delivered over requested reduction (duration-weighted) of past dispatches with telemetry."""
        asked = got = 0.0
        for d in self.store.dispatches(location):
            if d.delivered_kw is None or d.requested_kw <= 0:
                continue
            dur = d.end_ms - d.start_ms
            asked += d.requested_kw * dur
            got += d.delivered_kw * dur
        return None if asked <= 0 else got / asked
