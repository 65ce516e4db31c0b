"""The VPP's contract portfolio: per location (bus·phase id) and tier, devices, kW and contract terms.

    portfolio = Portfolio.from_dict({
        "tiers": ["green", "yellow", "black"],              # shed order; the last is black
        "contracts": {"green":  {"max_curtailment_h_per_day": 6, "max_events_per_day": 3,
                                 "min_notice_min": 0, "compensation_usd_per_kwh": 0.05,
                                 "compensation_usd_per_event": 0.0},
                      "yellow": {...}},
        "holdings": [{"location": "671.1", "tier": "green", "devices": 120, "kw": 180.0}, ...]})
    portfolio.holding("671.1", "green").contract.max_curtailment_h_per_day

A holding may carry its own "contract" (replacing the tier's). The black tier is held (its kW is
part of the location's demand) but never curtailed, so it needs no contract. `Portfolio.load(path)`
reads the same document from JSON or TOML. Bad data raises `PortfolioError` naming the field
(`holdings[3].kw: ...`).
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vocab.location import LocationError, normalize


class PortfolioError(ValueError):
    """Invalid portfolio data (the message names the field)."""


@dataclass(frozen=True)
class TierContract:
    """What a customer signed for one tier: at most `max_curtailment_h_per_day` hours and
    `max_events_per_day` events (runs of consecutive curtailed intervals) per UTC day, at least
    `min_notice_min` minutes between dispatch and curtailment; paid per kWh shed and per event."""

    max_curtailment_h_per_day: float
    max_events_per_day: int
    min_notice_min: float
    compensation_usd_per_kwh: float
    compensation_usd_per_event: float = 0.0

    def max_intervals_per_day(self, interval_h: float) -> int:
        """Whole intervals of `interval_h` hours the daily curtailment hours allow."""
        return int(math.floor(self.max_curtailment_h_per_day / interval_h + 1e-9))

    def daily_energy_limit_kwh(self, kw: float) -> float:
        """Most energy the tier can shed in a day: its kW for the contract's hours."""
        return kw * self.max_curtailment_h_per_day


@dataclass(frozen=True)
class Holding:
    """The portfolio's share of one tier at one location."""

    location: str
    tier: str
    devices: int
    kw: float                      # contracted kW of the tier's slices at the location
    contract: TierContract | None  # None only for black


def _number(value: Any, field: str, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo:
        raise PortfolioError(f"{field}: expected a finite number >= {lo:g}, got {value!r}")
    return float(value)


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PortfolioError(f"{field}: expected an integer >= 0, got {value!r}")
    return value


CONTRACT_KEYS = ("max_curtailment_h_per_day", "max_events_per_day", "min_notice_min",
                 "compensation_usd_per_kwh", "compensation_usd_per_event")


def parse_contract(data: Any, field: str) -> TierContract:
    if not isinstance(data, Mapping):
        raise PortfolioError(f"{field}: expected a table of {', '.join(CONTRACT_KEYS)}")
    unknown = sorted(set(data) - set(CONTRACT_KEYS))
    if unknown:
        raise PortfolioError(f"{field}.{unknown[0]}: unknown key")
    for key in CONTRACT_KEYS[:4]:
        if key not in data:
            raise PortfolioError(f"{field}.{key}: missing")
    hours = _number(data["max_curtailment_h_per_day"], f"{field}.max_curtailment_h_per_day")
    if hours > 24:
        raise PortfolioError(f"{field}.max_curtailment_h_per_day: more than 24 h ({hours:g})")
    return TierContract(hours, _count(data["max_events_per_day"], f"{field}.max_events_per_day"),
                        _number(data["min_notice_min"], f"{field}.min_notice_min"),
                        _number(data["compensation_usd_per_kwh"], f"{field}.compensation_usd_per_kwh"),
                        _number(data.get("compensation_usd_per_event", 0.0), f"{field}.compensation_usd_per_event"))


class Portfolio:
    """Holdings keyed by (location, tier); `tiers` in shed order, the last one black."""

    def __init__(self, tiers: tuple[str, ...], holdings: list[Holding]):
        if len(tiers) < 2 or len(set(tiers)) != len(tiers):
            raise PortfolioError(f"tiers: expected >= 2 distinct names (the last is black), got {list(tiers)!r}")
        self.tiers = tuple(tiers)
        self._holdings: dict[tuple[str, str], Holding] = {}
        for h in holdings:
            key = (h.location, h.tier)
            if key in self._holdings:
                raise PortfolioError(f"holding {h.location}/{h.tier}: given twice")
            self._holdings[key] = h

    @property
    def black(self) -> str:
        return self.tiers[-1]

    @property
    def sheddable_tiers(self) -> tuple[str, ...]:
        """Every tier but black, first-shed first."""
        return self.tiers[:-1]

    def locations(self) -> list[str]:
        return sorted({loc for loc, _ in self._holdings})

    def holding(self, location: str, tier: str) -> Holding | None:
        return self._holdings.get((location, tier))

    def holdings(self) -> list[Holding]:
        return [self._holdings[k] for k in sorted(self._holdings)]

    def kw(self, location: str) -> float:
        """Contracted kW at a location, every tier."""
        return sum(h.kw for (loc, _), h in self._holdings.items() if loc == location)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Portfolio":
        if not isinstance(data, Mapping):
            raise PortfolioError("(document): expected a table with tiers, contracts, holdings")
        tiers = data.get("tiers")
        if not isinstance(tiers, list) or not all(isinstance(t, str) and t for t in tiers):
            raise PortfolioError(f"tiers: expected a list of tier names, got {tiers!r}")
        contracts_in = data.get("contracts", {})
        if not isinstance(contracts_in, Mapping):
            raise PortfolioError("contracts: expected a table per tier")
        contracts = {}
        for name, c in contracts_in.items():
            if name not in tiers:
                raise PortfolioError(f"contracts.{name}: not a tier ({', '.join(tiers)})")
            if name == tiers[-1]:
                raise PortfolioError(f"contracts.{name}: the black tier is never curtailed")
            contracts[name] = parse_contract(c, f"contracts.{name}")
        rows = data.get("holdings")
        if not isinstance(rows, list) or not rows:
            raise PortfolioError("holdings: expected a non-empty list")
        holdings = [_holding(row, f"holdings[{n}]", tiers, contracts) for n, row in enumerate(rows)]
        return cls(tuple(tiers), holdings)

    @classmethod
    def load(cls, path: str | Path) -> "Portfolio":
        """A portfolio document from a .json or .toml file."""
        p = Path(path)
        try:
            text = p.read_text()
            data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise PortfolioError(f"{p}: {exc}") from None
        return cls.from_dict(data)


def _holding(row: Any, field: str, tiers: list[str], contracts: dict[str, TierContract]) -> Holding:
    if not isinstance(row, Mapping):
        raise PortfolioError(f"{field}: expected a table")
    unknown = sorted(set(row) - {"location", "tier", "devices", "kw", "contract"})
    if unknown:
        raise PortfolioError(f"{field}.{unknown[0]}: unknown key")
    try:
        location = normalize(row.get("location"))
    except LocationError as exc:
        raise PortfolioError(f"{field}.location: {exc}") from None
    tier = row.get("tier")
    if tier not in tiers:
        raise PortfolioError(f"{field}.tier: {tier!r} is not one of {', '.join(tiers)}")
    contract = contracts.get(tier)
    if "contract" in row:
        if tier == tiers[-1]:
            raise PortfolioError(f"{field}.contract: the black tier is never curtailed")
        contract = parse_contract(row["contract"], f"{field}.contract")
    if contract is None and tier != tiers[-1]:
        raise PortfolioError(f"{field}.contract: tier {tier!r} has no contract (contracts.{tier} or here)")
    return Holding(location, tier, _count(row.get("devices"), f"{field}.devices"),
                   _number(row.get("kw"), f"{field}.kw"), contract)
