"""The one thing market/te needs from the network: a price per (location, interval).

`PriceLookup` is the contract; the LEM provides DLMPs through it (its `dlmp.csv` loads with
`TablePriceLookup.from_dlmp_csv`).  `FlatTariff` is the no-network fallback and the test fake.
Prices come in USD/MWh (floats, the LEM's unit) and are converted once to integer uUSD/kWh by
`price_uusd_per_kwh`.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Protocol

from market.te.errors import PriceLookupError
from market.te.units import price_uusd_per_kwh_from_usd_per_mwh


class PriceLookup(Protocol):
    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        """Price at `location` in `interval`, USD/MWh; raises PriceLookupError if unknown."""
        ...


def price_uusd_per_kwh(lookup: PriceLookup, location: str, interval: int) -> int:
    """Integer price in uUSD/kWh (the unit of everything hashed)."""
    return price_uusd_per_kwh_from_usd_per_mwh(
        lookup.price_usd_per_mwh(location, interval), f"price at {location!r} interval {interval}")


class FlatTariff:
    """The same price everywhere and always (no network information)."""

    def __init__(self, price_usd_per_mwh: float) -> None:
        if not math.isfinite(price_usd_per_mwh):
            raise PriceLookupError(f"flat tariff: non-finite price {price_usd_per_mwh!r}")
        self._price = float(price_usd_per_mwh)

    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        return self._price


class TablePriceLookup:
    """Prices from a table {(location, interval): USD/MWh}, e.g. the LEM's DLMPs.

    A location is a bus name, or `bus.phase` for a phase-specific price; asking for a bus
    whose prices are per phase returns the mean over its phases.
    """

    def __init__(self, table: Mapping[tuple[str, int], float]) -> None:
        self._table: dict[tuple[str, int], float] = {}
        for (location, interval), price in table.items():
            if not math.isfinite(float(price)):
                raise PriceLookupError(f"price table: non-finite price at {location!r} interval {interval}")
            self._table[(str(location), int(interval))] = float(price)

    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        try:
            return self._table[(location, int(interval))]
        except KeyError:
            raise PriceLookupError(f"no price for location {location!r} interval {interval}") from None

    def locations(self) -> list[str]:
        return sorted({loc for loc, _ in self._table})

    def buses(self) -> list[str]:
        """Locations without a `.phase` suffix (per-bus prices), sorted."""
        phased = {loc for loc in self.locations() if "." in loc}
        return [loc for loc in self.locations() if loc not in phased]

    def n_intervals(self) -> int:
        return 1 + max((t for _, t in self._table), default=-1)


    @classmethod
    def from_dlmp_csv(cls, path: str | Path) -> "TablePriceLookup":
        """Read `dlmp.csv` (columns bus, phase, interval, dlmp_usd_per_mwh): per bus.phase and per bus (mean)."""
        per_phase: dict[tuple[str, int], float] = {}
        per_bus: dict[tuple[str, int], list[float]] = {}
        with Path(path).open(newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"bus", "phase", "interval", "dlmp_usd_per_mwh"}
            if not need <= set(reader.fieldnames or ()):
                raise PriceLookupError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                try:
                    interval = int(row["interval"])
                    price = float(row["dlmp_usd_per_mwh"])
                except ValueError as exc:
                    raise PriceLookupError(f"{path}:{line}: {exc}") from None
                per_phase[(f"{row['bus']}.{row['phase']}", interval)] = price
                per_bus.setdefault((row["bus"], interval), []).append(price)
        table = dict(per_phase)
        table.update({key: sum(v) / len(v) for key, v in per_bus.items()})
        return cls(table)


class ResampledLookup:
    """Ask `inner` (n_inner intervals per day) for the interval covering t of n_outer per day:
    t_inner = t x n_inner // n_outer — e.g. hourly LEM prices for a 15-minute P2P market."""

    def __init__(self, inner: PriceLookup, n_inner: int, n_outer: int) -> None:
        if n_inner < 1 or n_outer < 1:
            raise PriceLookupError(f"resampling needs positive interval counts, got {n_inner}, {n_outer}")
        self.inner, self.n_inner, self.n_outer = inner, n_inner, n_outer

    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        return self.inner.price_usd_per_mwh(location, int(interval) * self.n_inner // self.n_outer)
