"""The yield-statistics store contract, and `FakeYieldStore` (in memory) beside it.

What is kept (all kW, times UTC epoch ms):
- availability buckets: per (location, tier, bucket start) the sum and count of the tier's enabled kW
  in rounds where the tier was not being shed; `hour` = UTC hour of day of the bucket start. Adding a
  bucket that exists adds to its sum and count (telemetry arrives in pieces);
- the last time each (location, tier) was being shed (the settle rule of `yield_stats`);
- dispatch records: what the VPP asked a location for in one interval (baseline and goal kW) and
  the enabled kW delivered (sum and count of telemetry rows in the interval).

`market.vpp.sqlite_store.SqliteYieldStore` is the default, persistent implementation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Protocol


@dataclass(frozen=True)
class Bucket:
    location: str
    tier: str
    start_ms: int
    sum_kw: float
    n: int

    @property
    def mean_kw(self) -> float:
        return self.sum_kw / self.n


@dataclass(frozen=True)
class DispatchRecord:
    """One location's dispatch in one interval [start_ms, end_ms), and what telemetry showed."""

    location: str
    start_ms: int
    end_ms: int
    baseline_kw: float            # enabled kW expected without the dispatch
    goal_kw: float                # enabled kW asked for (baseline − cleared reduction)
    delivered_sum_kw: float = 0.0
    delivered_n: int = 0

    @property
    def requested_kw(self) -> float:
        return self.baseline_kw - self.goal_kw

    @property
    def delivered_kw(self) -> float | None:
        """Mean reduction delivered (baseline − mean enabled kW), None before any telemetry."""
        return None if self.delivered_n == 0 else self.baseline_kw - self.delivered_sum_kw / self.delivered_n


def hour_of_day(t_ms: int) -> int:
    return int(t_ms // 3_600_000) % 24


class YieldStore(Protocol):
    """Persistence of the yield statistics (see the module docstring)."""

    def add_buckets(self, buckets: Iterable[Bucket]) -> None: ...

    def bucket_means(self, location: str, tier: str, hours: Iterable[int]) -> list[float]:
        """Mean kW of every bucket of (location, tier) whose start lies in one of `hours`, ordered by start."""
        ...

    def last_shed_ms(self, location: str, tier: str) -> int | None: ...

    def set_last_shed_ms(self, location: str, tier: str, t_ms: int) -> None: ...

    def add_dispatch(self, record: DispatchRecord) -> None:
        """Record a dispatch; one for the same (location, start_ms) replaces it (telemetry kept)."""
        ...

    def add_delivered(self, location: str, start_ms: int, sum_kw: float, n: int) -> None: ...

    def dispatches(self, location: str | None = None) -> list[DispatchRecord]:
        """Dispatch records (of one location, or all), ordered by location and start."""
        ...


class FakeYieldStore:
    """In-memory `YieldStore` for tests (same semantics as the SQLite store)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, int], Bucket] = {}
        self._shed: dict[tuple[str, str], int] = {}
        self._dispatch: dict[tuple[str, int], DispatchRecord] = {}

    def add_buckets(self, buckets: Iterable[Bucket]) -> None:
        for b in buckets:
            key = (b.location, b.tier, b.start_ms)
            old = self._buckets.get(key)
            self._buckets[key] = b if old is None else replace(old, sum_kw=old.sum_kw + b.sum_kw, n=old.n + b.n)

    def bucket_means(self, location: str, tier: str, hours: Iterable[int]) -> list[float]:
        wanted = set(hours)
        return [b.mean_kw for k, b in sorted(self._buckets.items())
                if k[0] == location and k[1] == tier and hour_of_day(k[2]) in wanted]

    def last_shed_ms(self, location: str, tier: str) -> int | None:
        return self._shed.get((location, tier))

    def set_last_shed_ms(self, location: str, tier: str, t_ms: int) -> None:
        self._shed[(location, tier)] = int(t_ms)

    def add_dispatch(self, record: DispatchRecord) -> None:
        old = self._dispatch.get((record.location, record.start_ms))
        if old is not None:
            record = replace(record, delivered_sum_kw=old.delivered_sum_kw, delivered_n=old.delivered_n)
        self._dispatch[(record.location, record.start_ms)] = record

    def add_delivered(self, location: str, start_ms: int, sum_kw: float, n: int) -> None:
        old = self._dispatch[(location, start_ms)]
        self._dispatch[(location, start_ms)] = replace(old, delivered_sum_kw=old.delivered_sum_kw + sum_kw,
                                                       delivered_n=old.delivered_n + n)

    def dispatches(self, location: str | None = None) -> list[DispatchRecord]:
        return [r for k, r in sorted(self._dispatch.items()) if location is None or k[0] == location]
