"""Prices from the pricing LP: the MIP's integers fixed at their values, their domains relaxed
(Pyomo + HiGHS give no duals for a model that still holds Binary variables, fixed or not), the LP
re-solved and its duals read. `dlmp_components` is the one place prices are named.

DLMP per node location l and interval t (USD/MWh; k = 1000/Δt turns a dual in USD/kW per interval
into USD/MWh; duals are ∂objective/∂right-hand side):

    DLMP_l,t       = −k·y(location_injection[l,t])              (the price of 1 kW more fixed load at l)
    energy_l,t     =  k·λ_t,            λ_t = y(system_balance[t])   (the substation, the reference)
    loss_l,t       = −k·λ_t·LF_l,t
    congestion_l,t =  k·Σ_lines (y_max + y_min)·PTDF
    voltage_l,t    =  k·Σ_voltages (y_max + y_min)·dV/dP

They add up by stationarity of the free net injection p_net[l,t]; `price_dam` checks it to 1e-6.
Uplift (make-whole) per committed unit and accepted block: cost − revenue at its DLMPs, when > 0.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyomo.environ as pe

from market.lem import reactive
from market.lem.network_data import CriticalSet, NetworkData
from market.lem.problem import (ClearingError, HighsModel, SlackUse, build_dam, integer_values, schedule,
                                slack_report, solve_model)
from market.lem.schema import Market

SUM_TOL = 1e-6
OBJ_TOL = 1e-6


class PricingError(RuntimeError):
    """The pricing run contradicts the clearing (objective above the MIP's, components not adding up)."""


@dataclass
class Prices:
    locations: list[str]
    dlmp_usd_per_mwh: np.ndarray   # (locations × intervals)
    energy: np.ndarray
    loss: np.ndarray
    congestion: np.ndarray
    voltage: np.ndarray
    q_price_usd_per_mvarh: np.ndarray | None = None   # reactive price (market.lem.reactive), USD/Mvarh

    def at(self, location: str) -> np.ndarray:
        return self.dlmp_usd_per_mwh[self.locations.index(location)]


@dataclass
class Clearing:
    objective_usd: float
    pricing_objective_usd: float
    prices: Prices
    schedule_kw: dict[str, np.ndarray]
    slacks: list[SlackUse]
    uplift_usd: dict[str, float]
    integers: dict[str, float]
    values: dict[tuple, float] = field(default_factory=dict)  # the MIP solution by (component, index): a MIP start
    mip_bound_usd: float | None = None     # the proven lower bound on the MIP optimum
    schedule_kvar: dict[str, np.ndarray] = field(default_factory=dict)   # resources with reactive capability


def fix_and_relax(m: pe.ConcreteModel, values: dict[str, float]) -> None:
    """Fix every integer variable at `values[name]`, then make the domains continuous."""
    for v in m.component_data_objects(pe.Var, descend_into=True):
        if v.is_integer() or v.is_binary():
            if v.name not in values:
                raise KeyError(f"no value to fix {v.name} at")
            v.fix(values[v.name])
    pe.TransformationFactory("core.relax_integer_vars").apply_to(m)


def dlmp_components(m: pe.ConcreteModel) -> Prices:
    """DLMPs and their four components from the duals of a solved pricing LP (module docstring)."""
    net, dual = m.net, m.dual
    locs = list(m.L)
    nl, nt = len(locs), len(m.T)
    out = {name: np.zeros((nl, nt)) for name in ("dlmp", "energy", "loss", "congestion", "voltage", "q")}
    k = 1000.0 / m.market.interval_h
    for t in m.T:
        iv = net.intervals[t]
        lam = dual[m.constraint_system_balance[t]]
        out["energy"][:, t] = k * lam
        out["loss"][:, t] = -k * lam * iv.loss_factor
        if iv.loss_factor_q is not None:   # reactive price: −K·λ·LF^q + K·Σ y·PTDF^q + K·Σ y·dV/dQ
            out["q"][:, t] = -k * lam * iv.loss_factor_q
        line_pos = {x: i for i, x in enumerate(iv.line_ids)}
        for x in m.K:
            y = dual[m.constraint_line_flow_max[x, t]] + dual[m.constraint_line_flow_min[x, t]]
            out["congestion"][:, t] += k * y * iv.ptdf[line_pos[x]]
            if iv.ptdf_q is not None:
                out["q"][:, t] += k * y * iv.ptdf_q[line_pos[x]]
        v_pos = {x: i for i, x in enumerate(iv.voltage_locations)}
        for x in m.V:
            y = dual[m.constraint_voltage_max[x, t]] + dual[m.constraint_voltage_min[x, t]]
            out["voltage"][:, t] += k * y * iv.dv_dp[v_pos[x]]
            if iv.dv_dq is not None:
                out["q"][:, t] += k * y * iv.dv_dq[v_pos[x]]
        for j, loc in enumerate(locs):
            out["dlmp"][j, t] = -k * dual[m.constraint_location_injection[loc, t]]
    for name, arr in out.items():
        if not np.all(np.isfinite(arr)):
            raise PricingError(f"{name} prices are not finite")
    return Prices(locs, out["dlmp"], out["energy"], out["loss"], out["congestion"], out["voltage"], out["q"])


def _resource_price(prices: Prices, net: NetworkData, location: str) -> np.ndarray:
    return sum(share * prices.at(loc) for loc, share in net.split(location))


def uplift(m: pe.ConcreteModel, prices: Prices, sched: dict[str, np.ndarray]) -> dict[str, float]:
    """Make-whole payment (USD) of each committed unit and accepted block not covered by its revenue
    at its DLMPs (cost: energy at its offer price + no-load + start-ups)."""
    market, net = m.market, m.net
    k = market.interval_h / 1000.0
    out: dict[str, float] = {}
    for i, u in enumerate(market.units):
        p = sched[u.id]
        on = np.array([pe.value(m.unit_on[i, t]) > 0.5 for t in m.T])
        price = _resource_price(prices, net, u.location)
        cost = k * u.price_usd_per_mwh * p.sum()
        cost += u.no_load_usd_per_h * market.interval_h * on.sum()
        was_on = np.concatenate([[u.initial_on], on[:-1]])
        cost += u.startup_usd * float(np.sum(on & ~was_on))
        short = cost - k * float(price @ p)
        if short > 1e-9:
            out[u.id] = float(short)
    for b in market.blocks:
        p = sched[b.id]
        if p.sum() > 0:
            short = k * float((b.price_usd_per_mwh - _resource_price(prices, net, b.location)) @ p)
            if short > 1e-9:
                out[b.id] = float(short)
    return out


def pricing_lp(market: Market, net: NetworkData, critical: CriticalSet | None, values: dict[str, float]):
    """Build the clearing with integers fixed at `values`, relaxed, solved with duals: (model, objective)."""
    m = build_dam(market, net, critical)
    fix_and_relax(m, values)
    return m, solve_model(m, "pricing LP", duals=True)


def clear_dam(market: Market, net: NetworkData, critical: CriticalSet | None = None,
              mip_rel_gap: float = 1e-7, start: dict[tuple, float] | None = None,
              timings: dict[str, float] | None = None, fixed: dict[str, float] | None = None) -> Clearing:
    """The MIP (to `mip_rel_gap`), then the pricing LP; checks the LP against the MIP and the price
    decomposition. The model is built and compiled into HiGHS once: the MIP is solved, its integers
    fixed and relaxed in place, and the same HiGHS model re-solved as the LP (the same LP that
    `pricing_lp` builds afresh). `start`: a MIP start, values by (component, index) (e.g. `Clearing.values`
    of a previous clearing). `timings`, when given, receives build_s, compile_s, mip_s, lp_s.
    `fixed`: variables held at a value by name (e.g. the day-ahead commitments in the real-time market,
    `unit_on[0,3]`); they enter HiGHS as constants."""
    t0 = time.perf_counter()
    mip = build_dam(market, net, critical)
    for name, value in (fixed or {}).items():
        var = mip.find_component(name)
        if var is None:
            raise KeyError(f"fixed: the model has no variable {name!r}")
        var.fix(value)
    t1 = time.perf_counter()
    hm = HighsModel(mip, {"mip_rel_gap": mip_rel_gap})
    t2 = time.perf_counter()
    if start:
        hm.set_start(start)
    obj = hm.solve("clearing MIP")
    bound = hm.bound if hm.integer.size else obj
    values = integer_values(mip)
    t3 = time.perf_counter()
    mip_values = hm.values_by_key()
    hm.fix_integers(values)
    lp, lp_obj = mip, hm.solve("pricing LP", duals=True)
    t4 = time.perf_counter()
    if timings is not None:
        for key, v in (("build_s", t1 - t0), ("compile_s", t2 - t1), ("mip_s", t3 - t2), ("lp_s", t4 - t3)):
            timings[key] = timings.get(key, 0.0) + v
    if lp_obj > obj + OBJ_TOL * max(1.0, abs(obj)):
        raise PricingError(f"pricing objective {lp_obj} above the MIP objective {obj}")
    prices = dlmp_components(lp)
    total = prices.energy + prices.loss + prices.congestion + prices.voltage
    gap = float(np.max(np.abs(total - prices.dlmp_usd_per_mwh))) if total.size else 0.0
    if gap > SUM_TOL:
        raise PricingError(f"DLMP components miss the price by {gap} USD/MWh")
    sched = schedule(lp)
    return Clearing(obj, lp_obj, prices, sched, slack_report(lp), uplift(lp, prices, sched), values, mip_values, bound,
                    reactive.schedule_q(lp))


__all__ = ["Clearing", "ClearingError", "Prices", "PricingError", "clear_dam", "dlmp_components", "fix_and_relax",
           "pricing_lp", "uplift"]
