"""Bilateral schedules: a fixed p_kw[t] injected at `from_location` and withdrawn at `to_location`.

In the clearing they are constants in the two locations' injection rows (`formulation._schedule_terms`)
and in the AC check (`iteration.node_injections`); in the settlement the schedule is paid π_from − π_to
per kW (it pays the DLMP difference to − from as a network charge: the losses and congestion it
causes, priced at the margin).
"""
from __future__ import annotations

import numpy as np

from market.lem.iteration import node_injections


def market_injections(market, net, schedule_kw: dict[str, np.ndarray]) -> np.ndarray:
    """Every market injection per node location (participants and bilateral schedules)."""
    return node_injections(market, net, schedule_kw)


def network_charge_usd(market, net, prices) -> dict[str, float]:
    """{bilateral id: USD it pays over the horizon} = Δt/1000 · Σ_t p_t·(π_to,t − π_from,t)."""
    k = market.interval_h / 1000.0

    def at(where):
        return sum(share * prices.at(loc) for loc, share in net.split(where))
    return {bl.id: k * float(np.asarray(bl.p_kw, float) @ (at(bl.to_location) - at(bl.from_location)))
            for bl in market.bilaterals}
