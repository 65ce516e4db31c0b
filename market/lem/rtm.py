"""The real-time market (RTM): 5-min intervals cleared against the day-ahead (DA) schedule.

    DamReference    what the RTM needs of a DA result: schedule per resource, DLMPs and their
                    components, fixed loads, unserved energy, unit commitments, block acceptances,
                    the critical set (`from_clearing` in process, `read(DIR)` from a `market clear`
                    folder: schedule.csv, dlmp.csv, settlement.csv, commitment.csv, critical_set.csv)
    rt_market       the RT market document: the same participants over N intervals of 5 min from
                    DA interval `hour`; offers' availability, ISO prices and blocks mapped to the
                    5-min grid; storage starts at the DA state of charge and must end at least where
                    the DA trajectory is at the window's end; returns the variables to hold fixed:
                    every unit's on/start/stop at its DA commitment and every block at its DA
                    acceptance (start-up and no-load costs are sunk in the DA: zero in the RTM)
    rt_network      each RT interval linearised around the AC solution of the DA schedule of its
                    hour with the RT load (the DA operating point is the reference)
    clear_rtm       the RT clearing (MIP + fixed-integer pricing LP, the DA critical set) → RtClearing

Settlement of the deviations at RT prices is in `rtm_settlement.py`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from market.lem.ac_flow import ACPowerFlow
from market.lem.network_data import CriticalSet, NetworkData, interval_network, nodes_by_bus
from market.lem.pricing import Clearing, Prices, clear_dam
from market.lem.schema import Market, load_market

RT_INTERVAL_H = 5.0 / 60.0
FAMILIES = (("offer", "offers"), ("bid", "bids"), ("block", "blocks"), ("storage", "storage"), ("unit", "units"))


class RtmDataError(ValueError):
    """A DA reference (or RT window) that cannot be used; the message names the file or field."""


@dataclass
class DamReference:
    interval_h: float
    schedule_kw: dict[str, np.ndarray]    # resource id (and "iso") → kW per DA interval
    prices: Prices                        # DA DLMPs with components (node locations × DA intervals)
    fixed_load_kw: np.ndarray             # D per node location (prices.locations order) × DA interval
    unserved_kw: np.ndarray               # shortfall − surplus per DA interval
    unit_on: dict[str, np.ndarray]        # unit id → 0/1 per DA interval
    block_ratio: dict[str, float]         # block id → accepted share (0: rejected, 1: all)
    critical: CriticalSet

    @property
    def intervals(self) -> int:
        return self.prices.dlmp_usd_per_mwh.shape[1]

    @classmethod
    def from_clearing(cls, market: Market, net: NetworkData, clearing: Clearing,
                      critical: CriticalSet | None = None) -> "DamReference":
        T = market.intervals
        unserved = np.zeros(T)
        for s in clearing.slacks:
            if s.family.startswith("energy"):
                unserved[s.interval] += s.amount if s.family == "energy_shortfall" else -s.amount
        on = {u.id: np.array([clearing.integers[f"unit_on[{i},{t}]"] for t in range(T)])
              for i, u in enumerate(market.units)}
        ratio = {b.id: float(clearing.schedule_kw[b.id][b.first_interval]) / b.p_kw for b in market.blocks}
        loads = np.stack([iv.fixed_load_kw for iv in net.intervals], axis=1)
        return cls(market.interval_h, {k: np.asarray(v, float).copy() for k, v in clearing.schedule_kw.items()},
                   clearing.prices, loads, unserved, on, ratio, critical or CriticalSet())

    @classmethod
    def read(cls, folder: str | Path, market: Market) -> "DamReference":
        """The DA result written by `colorgrid market clear --horizon dam --out DIR` for `market`."""
        return _read_reference(Path(folder), market)

    def load_factor(self, nominal_kw: np.ndarray) -> np.ndarray:
        """The DA load factor per interval (D = nominal × factor)."""
        total = float(np.sum(nominal_kw))
        if total <= 0:
            return np.ones(self.intervals)
        return self.fixed_load_kw.sum(axis=0) / total


@dataclass
class RtClearing:
    market: Market                  # the RT market document (N × 5 min)
    hour: int                       # the DA interval the window starts in
    hours: list[int]                # the DA interval of each RT interval
    clearing: Clearing
    net: NetworkData
    fixed: dict[str, float]         # the DA commitments held


def window_hours(dam_intervals: int, da_interval_h: float, hour: int, n: int) -> list[int]:
    per = da_interval_h / RT_INTERVAL_H
    if abs(per - round(per)) > 1e-9 or round(per) < 1:
        raise RtmDataError(f"interval_h: the DA interval ({da_interval_h} h) is not a whole number of 5-min intervals")
    per = int(round(per))
    if n < 1:
        raise RtmDataError(f"intervals: need at least one 5-min interval, got {n}")
    hours = [hour + t // per for t in range(n)]
    if hour < 0 or hours[-1] >= dam_intervals:
        raise RtmDataError(f"hour: a window of {n} × 5 min from DA interval {hour} leaves the DA horizon "
                           f"0..{dam_intervals - 1}")
    return hours


def _soc_at(market: Market, dam: DamReference, i: int, time_da: float) -> float:
    """The DA state of charge (kWh) of storage i at `time_da` DA intervals from the start (linear
    within an interval: the DA power is constant there)."""
    st = market.storage[i]
    p = dam.schedule_kw[st.id]
    dt = dam.interval_h
    soc = st.soc_initial_kwh
    whole = int(np.floor(time_da + 1e-9))
    for h in range(min(whole, len(p))):
        soc += dt * (st.eta_charge * max(-p[h], 0.0) - max(p[h], 0.0) / st.eta_discharge)
    frac = time_da - whole
    if frac > 1e-9 and whole < len(p):
        soc += frac * dt * (st.eta_charge * max(-p[whole], 0.0) - max(p[whole], 0.0) / st.eta_discharge)
    return float(min(max(soc, st.soc_min_kwh), st.e_max_kwh))


def rt_market(market: Market, dam: DamReference, hour: int, n: int,
              iso_price_usd_per_mwh: list[float] | None = None) -> tuple[Market, dict[str, float]]:
    """The RT market of `n` 5-min intervals from DA interval `hour` and the variables held at their
    DA values (module docstring)."""
    if dam.intervals != market.intervals:
        raise RtmDataError(f"the DA result has {dam.intervals} intervals, the offers {market.intervals}")
    hours = window_hours(dam.intervals, market.interval_h, hour, n)
    per = int(round(market.interval_h / RT_INTERVAL_H))
    doc = market.model_dump()
    iso = doc["iso"]
    if iso_price_usd_per_mwh is not None:
        if len(iso_price_usd_per_mwh) != n:
            raise RtmDataError(f"iso price: {len(iso_price_usd_per_mwh)} values for {n} RT intervals")
        iso["import_price_usd_per_mwh"], iso["export_price_usd_per_mwh"] = list(iso_price_usd_per_mwh), None
    else:
        iso["import_price_usd_per_mwh"] = [iso["import_price_usd_per_mwh"][h] for h in hours]
        if iso["export_price_usd_per_mwh"] is not None:
            iso["export_price_usd_per_mwh"] = [iso["export_price_usd_per_mwh"][h] for h in hours]
    for o in doc["offers"]:
        if o["p_max_kw"] is not None:
            o["p_max_kw"] = [o["p_max_kw"][h] for h in hours]
    fixed: dict[str, float] = {}
    blocks = []
    for b in doc["blocks"]:
        inside = [t for t, h in enumerate(hours) if b["first_interval"] <= h < b["first_interval"] + b["n_intervals"]]
        if not inside:
            continue
        ratio = dam.block_ratio[b["id"]]
        fixed[f"block_accept[{len(blocks)}]"] = 1.0 if ratio > 1e-9 else 0.0
        fixed[f"block_ratio[{len(blocks)}]"] = ratio if ratio > 1e-9 else 0.0
        blocks.append({**b, "first_interval": inside[0], "n_intervals": len(inside), "parent": None,
                       "exclusive_group": None})
    doc["blocks"] = blocks
    end_da = hour + n / per
    for i, s in enumerate(doc["storage"]):
        s["soc_initial_kwh"] = _soc_at(market, dam, i, float(hour))
        s["soc_final_min_kwh"] = _soc_at(market, dam, i, end_da)
    for i, u in enumerate(doc["units"]):
        on = dam.unit_on[u["id"]]
        before = bool(on[hour - 1] > 0.5) if hour > 0 else u["initial_on"]
        u.update(initial_on=before, min_up_intervals=1, min_down_intervals=1, startup_usd=0.0, no_load_usd_per_h=0.0)
        prev = 1.0 if before else 0.0
        for t, h in enumerate(hours):
            now = float(on[h] > 0.5)
            fixed[f"unit_on[{i},{t}]"] = now
            fixed[f"unit_start[{i},{t}]"] = max(now - prev, 0.0)
            fixed[f"unit_stop[{i},{t}]"] = max(prev - now, 0.0)
            prev = now
    for bl in doc["bilaterals"]:
        bl["p_kw"] = [bl["p_kw"][h] for h in hours]
    _energy_limits_left(doc, market, dam, hours, per)
    doc.update(intervals=n, interval_h=RT_INTERVAL_H)
    return load_market(doc), fixed


def _energy_limits_left(doc: dict, market: Market, dam: DamReference, hours: list[int], per: int) -> None:
    """A daily limit in the RT window: what the day allows less the DA energy of the day outside the
    window (E_RT,window + E_DA,rest of day within [E_min, E_max])."""
    day_of = [int(h * market.interval_h // 24.0) for h in hours]
    for family in ("offers", "bids", "units"):
        for r in doc[family]:
            lo, hi = r["daily_energy_min_kwh"], r["daily_energy_max_kwh"]
            if lo is None and hi is None:
                continue
            if day_of[0] != day_of[-1]:
                raise RtmDataError(f"hour: the RT window crosses a day boundary where {r['id']} has a daily energy limit")
            sign = -1.0 if family == "bids" else 1.0
            p = sign * dam.schedule_kw[r["id"]]
            day = [h for h in range(market.intervals) if int(h * market.interval_h // 24.0) == day_of[0]]
            rest = market.interval_h * float(p[day].sum()) - RT_INTERVAL_H * float(sum(p[h] for h in hours))
            r["daily_energy_max_kwh"] = None if hi is None else max(hi - rest, 0.0)
            r["daily_energy_min_kwh"] = None if lo is None else max(lo - rest - 1e-9, 0.0)


def da_node_injections(market: Market, dam: DamReference, locations: list[str], nodes_of: dict[str, list[str]],
                       ) -> np.ndarray:
    """(node locations × DA intervals) market net injection of the DA schedule."""
    from market.lem.iteration import node_injections

    probe = NetworkData("", [_LocationsOnly(locations)], nodes_of)
    return node_injections(market, probe, dam.schedule_kw)


@dataclass
class _LocationsOnly:
    locations: list[str]


def rt_network(feeder, market: Market, dam: DamReference, hour: int, load_factor: list[float],
               rating_margin: float = 0.01, voltage_margin_pu: float = 0.002, controls: bool | None = None,
               critical: CriticalSet | None = None) -> NetworkData:
    """Each RT interval linearised at the AC solution of the DA schedule of its hour, with the feeder's
    loads × `load_factor[t]` (one per RT interval) and its controls settled; the rows of `critical`
    (default: the DA critical set) are linearised."""
    crit = dam.critical if critical is None else critical
    n = len(load_factor)
    hours = window_hours(dam.intervals, market.interval_h, hour, n)
    ac = ACPowerFlow(feeder, controls)
    nodes_of = nodes_by_bus(ac.locations)
    inj = da_node_injections(market, dam, ac.locations, nodes_of)
    ivs, cache = [], {}
    for t, (h, s) in enumerate(zip(hours, load_factor)):
        if not np.isfinite(s) or s < 0:
            raise RtmDataError(f"load factor [{t}]: need a finite value ≥ 0, got {s}")
        key = (h, float(s))
        if key not in cache:
            pt = ac.solve(t, float(s), inj[:, h])
            solved = getattr(pt, "result", None) or pt.network   # the solved state to linearise
            cache[key] = interval_network(solved, pt.snapshot, ac.locations, nodes_of, ac.nominal_load_kw * s,
                                          pt.injection_kw, rating_margin, voltage_margin_pu, list(crit.lines),
                                          list(crit.voltages))
        ivs.append(cache[key])
    return NetworkData(ac.base.source.bus.lower(), ivs, nodes_of)


def clear_rtm(market: Market, dam: DamReference, rt_net: NetworkData, hour: int, critical: CriticalSet | None = None,
              iso_price_usd_per_mwh: list[float] | None = None, mip_rel_gap: float = 1e-6,
              timings: dict[str, float] | None = None) -> RtClearing:
    """Clear the RT window on `rt_net` (one linearisation per RT interval) with the DA commitments held;
    `critical` defaults to the DA critical set."""
    n = len(rt_net.intervals)
    rt_mk, fixed = rt_market(market, dam, hour, n, iso_price_usd_per_mwh)
    crit = dam.critical if critical is None else critical
    clearing = clear_dam(rt_mk, rt_net, crit, mip_rel_gap, timings=timings, fixed=fixed)
    return RtClearing(rt_mk, hour, window_hours(dam.intervals, market.interval_h, hour, n), clearing, rt_net, fixed)


# --- reading a DA result folder ------------------------------------------------------------------
def _rows(folder: Path, name: str) -> list[dict]:
    path = folder / name
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise RtmDataError(f"{path}: cannot read ({exc.strerror or exc}); is it a `market clear` folder?") from None


def _num(path: str, row: dict, key: str) -> float:
    try:
        v = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise RtmDataError(f"{path}: column {key!r} missing or not a number in {row}") from None
    if not np.isfinite(v):
        raise RtmDataError(f"{path}: {key} is not finite in {row}")
    return v


def _loc(bus: str, phase: str) -> str:
    return bus if phase == "abc" else f"{bus}.{phase}"


def _read_reference(folder: Path, market: Market) -> DamReference:
    T = market.intervals
    dl = _rows(folder, "dlmp.csv")
    locs: list[str] = []
    for r in dl:
        loc = _loc(r["bus"], r["phase"])
        if loc not in locs:
            locs.append(loc)
    col = {x: j for j, x in enumerate(locs)}
    arr = {k: np.full((len(locs), T), np.nan) for k in ("dlmp_usd_per_mwh", "energy", "loss", "congestion", "voltage")}
    for r in dl:
        t = int(_num("dlmp.csv", r, "interval"))
        if not 0 <= t < T:
            raise RtmDataError(f"dlmp.csv: interval {t} outside the offers' 0..{T - 1}")
        for k, a in arr.items():
            a[col[_loc(r["bus"], r["phase"])], t] = _num("dlmp.csv", r, k)
    if any(np.isnan(a).any() for a in arr.values()):
        raise RtmDataError(f"dlmp.csv: not every location has all {T} intervals of the offers")
    prices = Prices(locs, arr["dlmp_usd_per_mwh"], arr["energy"], arr["loss"], arr["congestion"], arr["voltage"])
    sched: dict[str, np.ndarray] = {}
    for r in _rows(folder, "schedule.csv"):
        sched.setdefault(r["resource"], np.zeros(T))[int(_num("schedule.csv", r, "interval"))] = _num("schedule.csv", r, "p_kw")
    ids = [x.id for _, fam in FAMILIES for x in getattr(market, fam)] + ["iso"]
    missing = [x for x in ids if x not in sched]
    if missing:
        raise RtmDataError(f"schedule.csv: no rows for {missing[:5]} of the offers (a DA result of other offers?)")
    for bl in market.bilaterals:   # fixed by the offers (schedule.csv lists both ends)
        sched[bl.id] = np.asarray(bl.p_kw, float)
    loads = np.zeros((len(locs), T))
    unserved = np.zeros(T)
    for r in _rows(folder, "settlement.csv"):
        if r["interval"] == "total":
            continue
        t = int(_num("settlement.csv", r, "interval"))
        if r["kind"] == "fixed_load":
            loads[col[_loc(r["bus"], r["phase"])], t] = -_num("settlement.csv", r, "p_kw")
        elif r["kind"] == "slack":
            unserved[t] += _num("settlement.csv", r, "p_kw")
    on = {u.id: np.full(T, np.nan) for u in market.units}
    ratio = {b.id: np.nan for b in market.blocks}
    for r in _rows(folder, "commitment.csv"):
        if r["kind"] == "unit" and r["resource"] in on:
            on[r["resource"]][int(_num("commitment.csv", r, "interval"))] = _num("commitment.csv", r, "value")
        elif r["kind"] == "block" and r["resource"] in ratio:
            ratio[r["resource"]] = _num("commitment.csv", r, "value")
    bad = [k for k, v in on.items() if np.isnan(v).any()] + [k for k, v in ratio.items() if np.isnan(v)]
    if bad:
        raise RtmDataError(f"commitment.csv: no commitment for {bad[:5]}")
    crit = CriticalSet()
    for r in _rows(folder, "critical_set.csv"):
        (crit.lines if r["kind"] == "line" else crit.voltages).append(r["id"])
    return DamReference(market.interval_h, sched, prices, loads, unserved, on, ratio, crit)
