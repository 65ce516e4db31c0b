"""A default VPP portfolio generated from the fleet at a feeder's load locations (for `colorgrid day`
and tests): the shipped tier contracts `data/contracts.toml` and one holding per location·tier.

    portfolio = default_portfolio({"671.1": (120.0, 120.0, 26.7), ...}, {"671.1": 100, ...})

`tier_kw[location]` is the contracted kW per tier (shed order, black last): the rated kW of the
tier's slices of the devices at that location; `devices[location]` their count (each device has a
slice in every tier with a share > 0).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Mapping, Sequence

from market.vpp.portfolio import Portfolio, PortfolioError

CONTRACTS_TOML = Path(__file__).resolve().parent / "data" / "contracts.toml"
DEFAULT_TIERS = ("green", "yellow", "black")


def default_contracts(path: str | Path | None = None) -> dict:
    """The tier contracts table (tier -> terms) from the shipped TOML (or `path`)."""
    p = Path(path or CONTRACTS_TOML)
    try:
        return tomllib.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise PortfolioError(f"{p}: {exc}") from None


def default_portfolio(tier_kw: Mapping[str, Sequence[float]], devices: Mapping[str, int],
                      tiers: Sequence[str] = DEFAULT_TIERS, contracts: Mapping | None = None) -> Portfolio:
    """One holding per location·tier (kW > 0) with the shipped contracts for every sheddable tier."""
    tiers = tuple(tiers)
    terms = dict(contracts if contracts is not None else default_contracts())
    missing = [t for t in tiers[:-1] if t not in terms]
    if missing:
        raise PortfolioError(f"contracts.{missing[0]}: no default contract for this tier")
    holdings = []
    for loc in sorted(tier_kw):
        kws = tuple(float(x) for x in tier_kw[loc])
        if len(kws) != len(tiers):
            raise PortfolioError(f"holdings {loc}: {len(kws)} tier kW for {len(tiers)} tiers")
        holdings += [{"location": loc, "tier": tier, "devices": int(devices[loc]), "kw": kw}
                     for tier, kw in zip(tiers, kws) if kw > 0]
    return Portfolio.from_dict({"tiers": list(tiers), "holdings": holdings,
                                "contracts": {t: dict(terms[t]) for t in tiers[:-1]}})
