"""The VPP's results as files: supply curves as JSON (what `colorgrid vpp curve` writes and
`colorgrid vpp dispatch` reads back), the curve as table rows, a portfolio as a document.

    write_curves(curves, "out/curves.json");  curves = read_curves("out/curves.json")
    CURVE_COLUMNS, curve_rows(curves)         # location, interval, start_ms, tier, price, p_kw, baseline
    portfolio_dict(portfolio)                 # Portfolio.from_dict(portfolio_dict(p)) == p

`read_curves` raises `SupplyError` naming the file and the field.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from market.vpp.portfolio import Portfolio
from market.vpp.supply import LocationSupply, SupplyCurves, SupplyError, SupplyStep

CURVES_VERSION = 1
CURVE_COLUMNS = ["location", "interval", "start_ms", "tier", "price_usd_per_mwh", "p_kw", "baseline_kw", "black_kw"]


def curves_dict(curves: SupplyCurves) -> dict:
    return {"v": CURVES_VERSION, "starts_ms": list(curves.starts_ms), "interval_h": curves.interval_h,
            "confidence": curves.confidence, "tiers": list(curves.tiers),
            "curves": [{"location": c.location, "interval": c.interval, "start_ms": c.start_ms,
                        "baseline_kw": c.baseline_kw, "black_kw": c.black_kw,
                        "steps": [asdict(s) for s in c.steps]}
                       for _, c in sorted(curves.curves.items())],
            "prices": [{"location": l, "tier": t, "price_usd_per_mwh": p} for (l, t), p in sorted(curves.prices.items())],
            "daily_energy_limit_kwh": [{"location": l, "tier": t, "kwh": v}
                                       for (l, t), v in sorted(curves.daily_energy_limit_kwh.items())],
            "offered": [{"location": l, "tier": t, "intervals": list(v)} for (l, t), v in sorted(curves.offered.items())],
            "missing": list(curves.missing)}


def curves_from_dict(doc: dict, where: str = "curves") -> SupplyCurves:
    try:
        if doc.get("v") != CURVES_VERSION:
            raise SupplyError(f"{where}.v: expected {CURVES_VERSION}, got {doc.get('v')!r}")
        curves = {}
        for n, c in enumerate(doc["curves"]):
            steps = tuple(SupplyStep(str(s["tier"]), float(s["price_usd_per_mwh"]), float(s["p_kw"])) for s in c["steps"])
            cur = LocationSupply(str(c["location"]), int(c["interval"]), int(c["start_ms"]), float(c["baseline_kw"]),
                                 float(c["black_kw"]), steps)
            curves[(cur.location, cur.interval)] = cur
        return SupplyCurves(tuple(int(s) for s in doc["starts_ms"]), float(doc["interval_h"]), float(doc["confidence"]),
                            tuple(str(t) for t in doc["tiers"]), curves,
                            {(p["location"], p["tier"]): float(p["price_usd_per_mwh"]) for p in doc["prices"]},
                            {(p["location"], p["tier"]): float(p["kwh"]) for p in doc["daily_energy_limit_kwh"]},
                            {(p["location"], p["tier"]): tuple(int(i) for i in p["intervals"]) for p in doc["offered"]},
                            [str(m) for m in doc.get("missing", [])])
    except SupplyError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SupplyError(f"{where}: not a curves document ({type(exc).__name__}: {exc})") from None


def write_curves(curves: SupplyCurves, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(curves_dict(curves), indent=1, sort_keys=True) + "\n")
    return path


def read_curves(path: str | Path) -> SupplyCurves:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SupplyError(f"{path}: not a readable JSON document ({exc})") from None
    if not isinstance(doc, dict):
        raise SupplyError(f"{path}: expected a JSON object")
    return curves_from_dict(doc, str(path))


def curve_rows(curves: SupplyCurves) -> list[list]:
    """One row per location·interval·tier (CURVE_COLUMNS), cheapest tier first."""
    return [[c.location, c.interval, c.start_ms, s.tier, s.price_usd_per_mwh, s.p_kw, c.baseline_kw, c.black_kw]
            for _, c in sorted(curves.curves.items()) for s in c.steps]


def portfolio_dict(portfolio: Portfolio) -> dict:
    """The portfolio as a document `Portfolio.from_dict` reads back (every contract per holding)."""
    holdings = []
    for h in portfolio.holdings():
        row = {"location": h.location, "tier": h.tier, "devices": h.devices, "kw": h.kw}
        if h.contract is not None:
            row["contract"] = asdict(h.contract)
        holdings.append(row)
    return {"tiers": list(portfolio.tiers), "holdings": holdings}
