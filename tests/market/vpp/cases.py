"""Shared hand-built cases for the VPP tests."""
from __future__ import annotations

from market.vpp.portfolio import Portfolio
from market.vpp.yield_stats import TelemetryRow

TIERS = ("green", "yellow", "black")
HOUR_MS = 3_600_000


def contract(hours=4.0, events=2, notice=0.0, usd_kwh=0.05, usd_event=0.0) -> dict:
    return {"max_curtailment_h_per_day": hours, "max_events_per_day": events, "min_notice_min": notice,
            "compensation_usd_per_kwh": usd_kwh, "compensation_usd_per_event": usd_event}


def portfolio(locations=("2.1", "3.1"), green_kw=100.0, yellow_kw=60.0, black_kw=20.0, **green_terms) -> Portfolio:
    holdings = []
    for loc in locations:
        holdings += [{"location": loc, "tier": "green", "devices": 50, "kw": green_kw},
                     {"location": loc, "tier": "yellow", "devices": 30, "kw": yellow_kw},
                     {"location": loc, "tier": "black", "devices": 10, "kw": black_kw}]
    return Portfolio.from_dict({"tiers": list(TIERS),
                                "contracts": {"green": contract(**green_terms),
                                              "yellow": contract(hours=2.0, events=1, usd_kwh=0.04)},
                                "holdings": holdings})


def rows(location: str, t0_ms: int, n: int, step_ms: int, enabled, shedding=(False, False, False)):
    """n rows every step_ms from t0_ms with enabled kW per tier (a tuple, or a function of the row index)."""
    out = []
    for i in range(n):
        e = enabled(i) if callable(enabled) else enabled
        out.append(TelemetryRow(location, t0_ms + i * step_ms, tuple(float(x) for x in e), tuple(shedding)))
    return out
