"""The one thing market/te needs from the network: a price per (location, interval).

`PriceLookup` is the contract; the LEM provides DLMPs through it (its `dlmp.csv` loads with
`TablePriceLookup.from_dlmp_csv`).  `FlatTariff` is the no-network fallback and the test fake.
Prices come in USD/MWh (floats, the LEM's unit) and are converted once to integer uUSD/kWh by
`price_uusd_per_kwh`.

Locations are location ids (`vocab.location`): a bus·phase `"671.1"` or a whole bus `"671"`,
lower-case.  Lookups and tables normalize what they are given (`" B01 "` is `"b01"`); a malformed
location raises `PriceLookupError` naming it, as does a location the table has no price for.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Protocol

from market.settlement.errors import UnitError
from market.settlement.units import price_uusd_per_kwh_from_usd_per_mwh
from market.te.auction.errors import PriceLookupError
from vocab.location import LocationError, location_id, normalize


class PriceLookup(Protocol):
    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        """Price at `location` in `interval`, USD/MWh; raises PriceLookupError if unknown."""
        ...


def location_key(location: object, where: str = "price lookup") -> str:
    """The normalized location id of `location`; PriceLookupError naming it if malformed."""
    try:
        return normalize(location)  # type: ignore[arg-type]
    except LocationError as exc:
        raise PriceLookupError(f"{where}: location {location!r} is not a location id ({exc})") from None


def price_uusd_per_kwh(lookup: PriceLookup, location: str, interval: int) -> int:
    """Integer price in uUSD/kWh (the unit of everything hashed)."""
    try:
        return price_uusd_per_kwh_from_usd_per_mwh(
            lookup.price_usd_per_mwh(location, interval), f"price at {location!r} interval {interval}")
    except UnitError as exc:
        raise PriceLookupError(str(exc)) from None


class FlatTariff:
    """The same price everywhere and always (no network information)."""

    def __init__(self, price_usd_per_mwh: float) -> None:
        if not math.isfinite(price_usd_per_mwh):
            raise PriceLookupError(f"flat tariff: non-finite price {price_usd_per_mwh!r}")
        self._price = float(price_usd_per_mwh)

    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        location_key(location, "flat tariff")
        return self._price


class TablePriceLookup:
    """Prices from a table {(location id, interval): USD/MWh}, e.g. the LEM's DLMPs.

    A location is a bus (`"671"`), or `bus.phase` (`"671.1"`) for a phase-specific price; the
    LEM's `dlmp.csv` gives a bus the mean over its phases.  Keys are normalized location ids.
    """

    def __init__(self, table: Mapping[tuple[str, int], float]) -> None:
        self._table: dict[tuple[str, int], float] = {}
        for (location, interval), price in table.items():
            key = location_key(location, "price table")
            if not math.isfinite(float(price)):
                raise PriceLookupError(f"price table: non-finite price at {location!r} interval {interval}")
            if (key, int(interval)) in self._table:
                raise PriceLookupError(f"price table: location {location!r} interval {interval} given twice")
            self._table[(key, int(interval))] = float(price)

    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        price = self._table.get((location, int(interval)))  # fast path: already a normalized id
        if price is None:
            price = self._table.get((location_key(location), int(interval)))
        if price is None:
            raise PriceLookupError(f"no price for location {location!r} interval {interval}")
        return price

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
        """Read `dlmp.csv` (columns bus, phase, interval, dlmp_usd_per_mwh): per bus.phase and per bus (mean).

        A row's location is `location_id(bus, phase)`; a malformed bus or phase raises
        PriceLookupError naming the file and line."""
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
                    bus = location_id(row["bus"])
                    phased = location_id(bus, int(row["phase"]))
                except ValueError as exc:  # LocationError is a ValueError
                    raise PriceLookupError(f"{path}:{line}: {exc}") from None
                if (phased, interval) in per_phase:
                    raise PriceLookupError(f"{path}:{line}: location {phased!r} interval {interval} given twice")
                per_phase[(phased, interval)] = price
                per_bus.setdefault((bus, interval), []).append(price)
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
