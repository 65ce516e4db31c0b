"""The day-ahead clearing problem: a short `build_dam` listing its variables and constraints, and
`solve_model`, which checks HiGHS's termination before anything is read.

The clearing always has a solution: unserved/spilled energy, line and voltage slacks are priced
(a ladder: balance at the price cap/floor > lines > voltages), so a market with too little supply
clears with slack use, reported by `slack_report` per family, location and interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pe
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from market.lem import formulation as f
from market.lem.network_data import CriticalSet, NetworkData
from market.lem.schema import Market

SLACK_TOL_KW = 1e-6
SLACK_TOL_PU = 1e-9


class ClearingError(RuntimeError):
    """The solver did not prove an optimum (`.status`); nothing was read from it."""

    def __init__(self, stage: str, status: str):
        self.stage, self.status = stage, status
        super().__init__(f"{stage}: HiGHS ended with {status!r}, not optimal; no result read")


def build_dam(market: Market, net: NetworkData, critical: CriticalSet | None = None) -> pe.ConcreteModel:
    """The day-ahead SCUC of `market` on `net`, with the line/voltage rows of `critical` (default none)."""
    critical = critical or CriticalSet()
    if len(net.intervals) != market.intervals:
        raise ValueError(f"network data has {len(net.intervals)} intervals, the market {market.intervals}")
    for family in ("offers", "bids", "blocks", "storage", "units"):
        for k, r in enumerate(getattr(market, family)):
            try:
                net.split(r.location)
            except KeyError as exc:
                raise ValueError(f"{family}[{k}].location: {exc.args[0]}") from None
    m = pe.ConcreteModel(name="lem_dam")
    m.market, m.net, m.critical = market, net, critical
    m.T = pe.Set(initialize=range(market.intervals), ordered=True)
    f.variable_location_p(m)
    f.variable_offer_p(m)
    f.variable_bid_p(m)
    f.variable_block_accept(m)
    f.variable_storage(m)
    f.variable_unit(m)
    f.variable_iso(m)
    f.variable_slack(m, critical)
    f.constraint_location_injection(m)
    f.constraint_system_balance(m)
    f.constraint_line_flow(m)
    f.constraint_voltage(m)
    f.constraint_offer_availability(m)
    f.constraint_storage_soc(m)
    f.constraint_storage_mode(m)
    f.constraint_unit_commitment(m)
    f.objective_cost(m)
    return m


def solve_model(m: pe.ConcreteModel, stage: str = "clearing", duals: bool = False, mip_rel_gap: float = 1e-7):
    """Solve with HiGHS; raise ClearingError unless optimal; load values (and duals into `m.dual`)."""
    opt = Highs()
    opt.config.load_solution = False
    opt.config.stream_solver = False
    opt.highs_options = {"mip_rel_gap": mip_rel_gap, "output_flag": False, "dual_feasibility_tolerance": 1e-10,
                         "primal_feasibility_tolerance": 1e-9}
    res = opt.solve(m)
    if res.termination_condition != TerminationCondition.optimal:
        raise ClearingError(stage, str(res.termination_condition))
    res.solution_loader.load_vars()
    if duals:
        m.dual = pe.Suffix(direction=pe.Suffix.IMPORT)
        for con, val in res.solution_loader.get_duals().items():
            m.dual[con] = val
    obj = pe.value(m.objective)
    if not np.isfinite(obj):
        raise ClearingError(stage, f"objective {obj}")
    return obj


@dataclass(frozen=True)
class SlackUse:
    family: str     # "energy_shortfall" | "energy_surplus" | "line_over" | "line_under" | "voltage_high" | "voltage_low"
    where: str      # location id (the substation bus for energy), or branch id for lines
    interval: int
    amount: float   # kW, or pu for voltages
    unit: str


def slack_report(m: pe.ConcreteModel) -> list[SlackUse]:
    """Every slack in use after a solve, named by family, place and interval."""
    sub = m.net.substation
    out: list[SlackUse] = []
    for t in m.T:
        for fam, var in (("energy_shortfall", m.slack_shortfall), ("energy_surplus", m.slack_surplus)):
            if pe.value(var[t]) > SLACK_TOL_KW:
                out.append(SlackUse(fam, sub, t, float(pe.value(var[t])), "kW"))
    for fam, var, tol, unit in (("line_over", m.slack_line_over, SLACK_TOL_KW, "kW"),
                                ("line_under", m.slack_line_under, SLACK_TOL_KW, "kW"),
                                ("voltage_high", m.slack_voltage_high, SLACK_TOL_PU, "pu"),
                                ("voltage_low", m.slack_voltage_low, SLACK_TOL_PU, "pu")):
        for (where, t), v in var.items():
            if pe.value(v) > tol:
                out.append(SlackUse(fam, where, t, float(pe.value(v)), unit))
    return out


def integer_values(m: pe.ConcreteModel) -> dict[str, float]:
    """{variable name: rounded value} of every integer variable after a solve."""
    out = {}
    for v in m.component_data_objects(pe.Var, descend_into=True):
        if v.is_integer() or v.is_binary():
            val = v.value
            if val is None:
                raise ClearingError("integer values", f"{v.name} has no value")
            out[v.name] = float(round(val))
    return out


def schedule(m: pe.ConcreteModel) -> dict[str, np.ndarray]:
    """{resource id: kW per interval}, generation positive (bids and charging negative)."""
    mk, T = m.market, list(m.T)
    out: dict[str, np.ndarray] = {}
    for kind, family in (("offer", mk.offers), ("bid", mk.bids), ("block", mk.blocks),
                         ("storage", mk.storage), ("unit", mk.units)):
        for k, r in enumerate(family):
            out[r.id] = np.array([float(pe.value(f._injection(m, kind, k, t))) for t in T])
    out["iso"] = np.array([pe.value(m.iso_import[t]) - pe.value(m.iso_export[t]) for t in T])
    return out
