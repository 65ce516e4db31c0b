"""Daily energy limits of offers, bids and units (kWh per day; `schema.days` groups the intervals).

    constraint_daily_energy   E_min ≤ Σ_{t ∈ day} x_r[t]·Δt ≤ E_max   for every limited resource and day

x_r: the offer's total step quantity, the bid's total taken (consumption, positive), the unit's p.
The rows are per participant: in the self-scheduling check (`equilibrium.py`) they stay with it.
"""
from __future__ import annotations

import pyomo.environ as pe

from market.lem.schema import days


def _quantity(m, family: str, k: int, t: int):
    mk = m.market
    if family == "offers":
        return sum(m.offer_p[k, s, t] for s in range(len(mk.offers[k].steps)))
    if family == "bids":
        return sum(m.bid_p[k, s, t] for s in range(len(mk.bids[k].steps)))
    return m.unit_p[k, t]


def limited(market) -> list[tuple[str, int, int, float | None, float | None]]:
    """[(family, index, day, E_min, E_max)] of every daily limit."""
    out = []
    for family in ("offers", "bids", "units"):
        for k, r in enumerate(getattr(market, family)):
            if r.daily_energy_min_kwh is None and r.daily_energy_max_kwh is None:
                continue
            out += [(family, k, d, r.daily_energy_min_kwh, r.daily_energy_max_kwh) for d in range(len(days(market)))]
    return out


def constraint_daily_energy(m) -> None:
    mk = m.market
    rows = limited(mk)
    by_day = days(mk)
    m.energy_limit_rows = pe.Set(initialize=[(fam, k, d) for fam, k, d, _, _ in rows], dimen=3, ordered=True)
    bounds = {(fam, k, d): (lo, hi) for fam, k, d, lo, hi in rows}

    def rule(_, fam, k, d):
        lo, hi = bounds[fam, k, d]
        e = sum(_quantity(m, fam, k, t) for t in by_day[d]) * mk.interval_h
        return pe.inequality(lo, e, hi)
    m.constraint_daily_energy = pe.Constraint(m.energy_limit_rows, rule=rule)
