"""Two-settlement of a real-time window: the DA quantity at the DA price, the deviation at the RT price.

Per party and RT interval t (of Δt = 5 min, k = Δt/1000, h(t) its DA interval), p generation positive:

    amount_usd = k·p_DA,h·π_DA,h + k·(p_RT,t − p_DA,h)·π_RT,t

for every market participant (its share-weighted DLMP), the feeder's loads per node location
(p = −D), the ISO at the substation energy price and unserved/spilled energy likewise. The DSO keeps
the rest, split per component as in `settlement.py`: its DA part from the DA withdrawals and the DA
components, its deviation part from Δp_net = p_net,RT − p_net,DA and the RT components:

    loss_t       = k·[Σ_l (−p_net,l)(energy + loss)_l − (iso + unserved)·energy]   (DA, then Δ at RT)
    congestion_t = k·Σ_l (−p_net,l)·congestion_l,   voltage_t = k·Σ_l (−p_net,l)·voltage_l

The identity — every row of an RT interval, the DSO's included, sums to zero — is checked to
`BALANCE_TOL_USD` (scaled; `SettlementError` otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.lem.iteration import node_injections
from market.lem.rtm import FAMILIES, DamReference, RtClearing
from market.lem.schema import Market
from market.lem.settlement import BALANCE_TOL_USD, SettlementError


@dataclass(frozen=True)
class TwoSettlementRow:
    party: str
    kind: str
    location: str
    interval: int            # RT interval
    da_p_kw: float
    da_price_usd_per_mwh: float
    rt_p_kw: float
    rt_price_usd_per_mwh: float
    da_amount_usd: float     # k·p_DA·π_DA (paid to the party)
    deviation_amount_usd: float   # k·(p_RT − p_DA)·π_RT
    amount_usd: float


@dataclass
class TwoSettlement:
    rows: list[TwoSettlementRow]
    balance_gap_usd: np.ndarray
    totals_usd: dict[str, float] = field(default_factory=dict)


def _row(party, kind, loc, t, k, pd, prd, pr, prr) -> TwoSettlementRow:
    da, dev = k * pd * prd, k * (pr - pd) * prr
    return TwoSettlementRow(party, kind, loc, t, float(pd), float(prd), float(pr), float(prr), float(da), float(dev),
                            float(da + dev))


def _dso(k: float, withdraw: np.ndarray, comp, j: slice | list, cols, iso: np.ndarray) -> tuple:
    """(loss, congestion, voltage) USD per column of `withdraw` (node × interval) at components `comp`
    (a Prices, node rows `j`, interval columns `cols`)."""
    energy = comp.energy[j][:, cols]
    loss = k * (np.sum(withdraw * (energy + comp.loss[j][:, cols]), axis=0) - iso * energy[0])
    return (loss, k * np.sum(withdraw * comp.congestion[j][:, cols], axis=0),
            k * np.sum(withdraw * comp.voltage[j][:, cols], axis=0))


def settle_rtm(market: Market, dam: DamReference, rt: RtClearing) -> TwoSettlement:
    """Settle the RT window `rt` against the DA reference `dam` (module docstring)."""
    net, c, hours = rt.net, rt.clearing, rt.hours
    n, k = len(hours), rt.market.interval_h / 1000.0
    locs = net.intervals[0].locations
    rt_col = {x: j for j, x in enumerate(c.prices.locations)}
    try:
        da_rows = [dam.prices.locations.index(x) for x in locs]
    except ValueError as exc:
        raise SettlementError(f"the DA prices miss a node location of the RT network: {exc}") from None
    da_at = {x: da_rows[j] for j, x in enumerate(locs)}

    def price(prices, col, loc, cols):
        return sum(sh * prices.dlmp_usd_per_mwh[col[l], cols] for l, sh in net.split(loc))

    rows: list[TwoSettlementRow] = []
    ts = list(range(n))
    for kind, fam in FAMILIES + (("bilateral", "bilaterals"),):
        for r in getattr(market, fam, []):
            rt_p = np.asarray(c.schedule_kw.get(r.id, np.zeros(n)), float)
            da_p = dam.schedule_kw[r.id][hours]
            where = getattr(r, "location", None) or r.from_location
            if kind == "bilateral":
                pd = price(dam.prices, da_at, r.from_location, hours) - price(dam.prices, da_at, r.to_location, hours)
                pr = price(c.prices, rt_col, r.from_location, ts) - price(c.prices, rt_col, r.to_location, ts)
            else:
                pd, pr = price(dam.prices, da_at, where, hours), price(c.prices, rt_col, where, ts)
            rows += [_row(r.id, kind, where, t, k, da_p[t], pd[t], rt_p[t], pr[t]) for t in ts]
    d_rt = np.stack([iv.fixed_load_kw for iv in net.intervals], axis=1)
    d_da = dam.fixed_load_kw[da_rows][:, hours]
    for j, loc in enumerate(locs):
        if np.any(d_rt[j] != 0.0) or np.any(d_da[j] != 0.0):
            rows += [_row(f"fixed_load@{loc}", "fixed_load", loc, t, k, -d_da[j, t],
                          dam.prices.dlmp_usd_per_mwh[da_rows[j], hours[t]], -d_rt[j, t],
                          c.prices.dlmp_usd_per_mwh[rt_col[loc], t]) for t in ts]
    e_da, e_rt = dam.prices.energy[da_rows[0], hours], c.prices.energy[rt_col[locs[0]]]
    iso_da, iso_rt = dam.schedule_kw["iso"][hours], np.asarray(c.schedule_kw["iso"], float)
    slack_rt = np.zeros(n)
    for s in c.slacks:
        if s.family.startswith("energy"):
            slack_rt[s.interval] += s.amount if s.family == "energy_shortfall" else -s.amount
    slack_da = dam.unserved_kw[hours]
    sub = net.substation
    rows += [_row("iso", "iso", sub, t, k, iso_da[t], e_da[t], iso_rt[t], e_rt[t]) for t in ts]
    rows += [_row("unserved_energy", "slack", sub, t, k, slack_da[t], e_da[t], slack_rt[t], e_rt[t])
             for t in ts if slack_da[t] != 0.0 or slack_rt[t] != 0.0]
    da_sched = {key: v[hours] for key, v in dam.schedule_kw.items()}
    rt_sched = {key: np.asarray(c.schedule_kw.get(key, np.zeros(n)), float) for key in da_sched}
    probe = rt.market
    pnet_da = node_injections(probe, net, da_sched) - d_da
    pnet_rt = node_injections(probe, net, rt_sched) - d_rt
    da_parts = _dso(k, -pnet_da, dam.prices, da_rows, hours, iso_da + slack_da)
    rt_idx = [rt_col[x] for x in locs]
    dev_parts = _dso(k, -(pnet_rt - pnet_da), c.prices, rt_idx, ts, (iso_rt + slack_rt) - (iso_da + slack_da))
    for name, da_v, dev_v in zip(("dso_loss_surplus", "dso_congestion_rent", "dso_voltage_rent"), da_parts, dev_parts):
        rows += [TwoSettlementRow(name, "dso", sub, t, 0.0, 0.0, 0.0, 0.0, float(da_v[t]), float(dev_v[t]),
                                  float(da_v[t] + dev_v[t])) for t in ts]
    gap, scale = np.zeros(n), np.zeros(n)
    for r in rows:
        gap[r.interval] += r.amount_usd
        scale[r.interval] += abs(r.amount_usd)
    if np.any(np.abs(gap) > BALANCE_TOL_USD * np.maximum(1.0, scale)):
        t = int(np.argmax(np.abs(gap)))
        raise SettlementError(f"two-settlement identity fails in RT interval {t}: payments miss by {gap[t]:.6g} USD")
    totals: dict[str, float] = {}
    for r in rows:
        totals[r.party] = totals.get(r.party, 0.0) + r.amount_usd
    return TwoSettlement(rows, gap, totals)
