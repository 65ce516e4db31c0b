"""Settlement of a cleared market at its DLMPs (issue 15 item 7).

Every party is paid `amount_usd = p_kw · price · Δt/1000` per interval (p generation positive, so
a bid, a charging battery and a fixed load pay): market participants at the share-weighted DLMP of
their location, a bilateral schedule at π_from − π_to per kW it moves (it pays the DLMP difference
as a network charge), the feeder's own loads per node location (`kind` "fixed_load", p = −D), the ISO at
the substation energy price for its net import, unserved/spilled energy (`kind` "slack") likewise.
What is left is the DSO's, decomposed per node location from the DLMP components:

    loss_surplus_t    = Σ_l (−p_net,l)(energy + loss)_l · k − (import + shortfall − surplus)·energy · k
    congestion_rent_t = Σ_l (−p_net,l) · congestion_l · k,    voltage_rent_t = Σ_l (−p_net,l) · voltage_l · k

(k = Δt/1000). The balance identity — what loads and bids pay = what suppliers, storage and the
ISO receive + the DSO surplus — is checked per interval to `BALANCE_TOL_USD` (scaled): it holds only
if the schedule adds up to the net injections and the four components add up to the prices, so it
checks the clearing's bookkeeping, not the optimality of the prices.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.lem.bilateral import market_injections
from market.lem.network_data import NetworkData
from market.lem.pricing import Clearing
from market.lem.schema import Market

BALANCE_TOL_USD = 1e-6


class SettlementError(RuntimeError):
    """The balance identity does not hold: the clearing's books do not add up."""


@dataclass(frozen=True)
class SettlementRow:
    party: str
    kind: str           # offer | bid | block | storage | unit | fixed_load | iso | slack | dso_*
    location: str
    interval: int
    p_kw: float         # generation positive
    price_usd_per_mwh: float
    amount_usd: float   # paid to the party (negative: the party pays)


@dataclass
class Settlement:
    rows: list[SettlementRow]
    congestion_rent_usd: np.ndarray            # per interval
    loss_surplus_usd: np.ndarray
    voltage_rent_usd: np.ndarray
    balance_gap_usd: np.ndarray                # per interval: Σ every row incl. the DSO's (≈ 0)
    totals_usd: dict[str, float] = field(default_factory=dict)   # per party over the horizon

    @property
    def dso_surplus_usd(self) -> float:
        return float(self.congestion_rent_usd.sum() + self.loss_surplus_usd.sum() + self.voltage_rent_usd.sum())


_FAMILIES = (("offer", "offers"), ("bid", "bids"), ("block", "blocks"), ("storage", "storage"), ("unit", "units"))


def settle(market: Market, net: NetworkData, clearing: Clearing) -> Settlement:
    """Settle `clearing` (made on `net`) at its DLMPs; SettlementError if the books do not balance."""
    prices, k = clearing.prices, market.interval_h / 1000.0
    locs = prices.locations
    col = {loc: i for i, loc in enumerate(locs)}
    T = market.intervals
    rows: list[SettlementRow] = []
    for kind, family in _FAMILIES:
        for r in getattr(market, family):
            price = sum(share * prices.dlmp_usd_per_mwh[col[loc]] for loc, share in net.split(r.location))
            p = np.asarray(clearing.schedule_kw[r.id], float)
            rows += [SettlementRow(r.id, kind, r.location, t, float(p[t]), float(price[t]), float(k * p[t] * price[t]))
                     for t in range(T)]
    for bl in market.bilaterals:   # paid π_from − π_to per kW moved: the network charge is its negative
        def at(where):
            return sum(share * prices.dlmp_usd_per_mwh[col[loc]] for loc, share in net.split(where))
        spread = at(bl.from_location) - at(bl.to_location)
        rows += [SettlementRow(bl.id, "bilateral", bl.from_location, t, float(bl.p_kw[t]), float(spread[t]),
                               float(k * bl.p_kw[t] * spread[t])) for t in range(T)]
    energy = prices.energy[0] if len(locs) else np.zeros(T)
    for t in range(T):
        d = net.intervals[t].fixed_load_kw
        for j, loc in enumerate(locs):
            if d[j] != 0.0:
                pr = float(prices.dlmp_usd_per_mwh[j, t])
                rows.append(SettlementRow(f"fixed_load@{loc}", "fixed_load", loc, t, -float(d[j]), pr, -k * float(d[j]) * pr))
    iso = np.asarray(clearing.schedule_kw["iso"], float)
    slack = np.zeros(T)
    for s in clearing.slacks:
        if s.family == "energy_shortfall":
            slack[s.interval] += s.amount
        elif s.family == "energy_surplus":
            slack[s.interval] -= s.amount
    for t in range(T):
        rows.append(SettlementRow("iso", "iso", net.substation, t, float(iso[t]), float(energy[t]),
                                  float(k * iso[t] * energy[t])))
        if slack[t] != 0.0:
            rows.append(SettlementRow("unserved_energy", "slack", net.substation, t, float(slack[t]), float(energy[t]),
                                      float(k * slack[t] * energy[t])))
    inj = market_injections(market, net, clearing.schedule_kw)
    p_net = inj - np.stack([iv.fixed_load_kw for iv in net.intervals], axis=1)
    withdraw = -p_net
    congestion = k * np.sum(withdraw * prices.congestion, axis=0)
    voltage = k * np.sum(withdraw * prices.voltage, axis=0)
    loss = k * (np.sum(withdraw * (prices.energy + prices.loss), axis=0) - (iso + slack) * energy)
    for t in range(T):
        for name, arr in (("dso_congestion_rent", congestion), ("dso_loss_surplus", loss), ("dso_voltage_rent", voltage)):
            rows.append(SettlementRow(name, "dso", net.substation, t, 0.0, 0.0, float(arr[t])))
    gap = np.zeros(T)
    scale = np.zeros(T)
    for r in rows:
        gap[r.interval] += r.amount_usd
        scale[r.interval] += abs(r.amount_usd)
    if np.any(np.abs(gap) > BALANCE_TOL_USD * np.maximum(1.0, scale)):
        t = int(np.argmax(np.abs(gap)))
        raise SettlementError(f"balance identity fails in interval {t}: payments miss by {gap[t]:.6g} USD")
    totals: dict[str, float] = {}
    for r in rows:
        totals[r.party] = totals.get(r.party, 0.0) + r.amount_usd
    return Settlement(rows, congestion, loss, voltage, gap, totals)
