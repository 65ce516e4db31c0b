"""The day-ahead clearing problem: a short `build_dam` listing its variables and constraints, and
`solve_model`, which checks HiGHS's termination before anything is read.

The clearing always has a solution: unserved/spilled energy, line and voltage slacks are priced
(a ladder: balance at the price cap/floor > lines > voltages), so a market with too little supply
clears with slack use, reported by `slack_report` per family, location and interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pe
from pyomo.common.tee import capture_output
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from market.lem import blocks, energy_limits
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
    for family, field in (("offers", "location"), ("bids", "location"), ("blocks", "location"), ("storage", "location"),
                          ("units", "location"), ("bilaterals", "from_location"), ("bilaterals", "to_location")):
        for k, r in enumerate(getattr(market, family)):
            try:
                net.split(getattr(r, field))
            except KeyError as exc:
                raise ValueError(f"{family}[{k}].{field}: {exc.args[0]}") from None
    m = pe.ConcreteModel(name="lem_dam")
    m.market, m.net, m.critical = market, net, critical
    m.T = pe.Set(initialize=range(market.intervals), ordered=True)
    f.variable_location_p(m)
    f.variable_offer_p(m)
    f.variable_bid_p(m)
    f.variable_block_accept(m)
    blocks.variable_block_ratio(m)
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
    blocks.constraint_block_ratio(m)
    blocks.constraint_block_family(m)
    energy_limits.constraint_daily_energy(m)
    f.objective_cost(m)
    return m


HIGHS_OPTIONS = {"output_flag": False, "dual_feasibility_tolerance": 1e-10, "primal_feasibility_tolerance": 1e-9}


class HighsModel:
    """A built clearing compiled once into HiGHS (Pyomo's linear standard-form compiler: the rows and
    columns as sparse matrices, no per-constraint expression walk), solved as the MIP, then re-solved
    in place as the fixed-integer pricing LP (`fix_integers`): one compilation serves both solves.

    Rows keep Pyomo's orientation (`mixed_form`: = / ≤ / ≥), so a HiGHS row dual is ∂objective/∂rhs
    of that Pyomo constraint, the convention `pricing.dlmp_components` states. Nothing is read before
    HiGHS reports `Optimal` (`ClearingError` otherwise)."""

    def __init__(self, m: pe.ConcreteModel, options: dict | None = None):
        info = LinearStandardFormCompiler().write(m, mixed_form=True)
        self.m, self.rows, self.columns = m, list(info.rows), list(info.columns)
        a = info.A.tocsc()
        rhs = np.asarray(info.rhs, float)
        kind = np.array([r.bound_type for r in self.rows], dtype=int)
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(self.columns), len(self.rows)
        lp.col_cost_ = np.asarray(info.c.toarray()).ravel() if hasattr(info.c, "toarray") else np.asarray(info.c, float).ravel()
        lp.offset_ = float(np.asarray(info.c_offset, float).ravel()[0]) if np.size(info.c_offset) else 0.0
        lp.col_lower_ = np.array([-inf if v.lb is None else float(v.lb) for v in self.columns])
        lp.col_upper_ = np.array([inf if v.ub is None else float(v.ub) for v in self.columns])
        lp.row_lower_ = np.where(kind >= 0, np.where(kind == 0, rhs, -inf), rhs)
        lp.row_upper_ = np.where(kind <= 0, np.where(kind == 0, rhs, inf), rhs)
        self.integer = np.array([j for j, v in enumerate(self.columns) if v.is_integer() or v.is_binary()], dtype=np.int32)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
        if self.integer.size:
            integrality = np.full(len(self.columns), highspy.HighsVarType.kContinuous)
            integrality[self.integer] = highspy.HighsVarType.kInteger
            lp.integrality_ = list(integrality)
        with capture_output(capture_fd=True):  # HiGHS prints its banner on construction
            self.h = highspy.Highs()
        for key, value in {**HIGHS_OPTIONS, **(options or {})}.items():
            self.h.setOptionValue(key, value)
        status = self.h.passModel(lp)
        if status != highspy.HighsStatus.kOk:
            raise ClearingError("compile", f"HiGHS refused the model ({status})")
        self.relaxed = not self.integer.size
        # free variables that no row or objective term holds (any value in bounds is optimal): 0 clipped
        seen = {id(v) for v in self.columns}
        self.unused = [v for v in m.component_data_objects(pe.Var, descend_into=True) if not v.fixed and id(v) not in seen]

    def set_start(self, values: dict[str, float]) -> int:
        """Offer a MIP start: column values by variable name (e.g. the previous clearing's solution;
        missing names start at 0). HiGHS checks it, completes it from its integer values if it is not
        feasible as given, and keeps it as the first incumbent. Returns the number of values used."""
        x = np.zeros(len(self.columns))
        n = 0
        for j, v in enumerate(self.columns):
            val = values.get(v.name)
            if val is not None:
                x[j], n = val, n + 1
        if n:
            sol = highspy.HighsSolution()
            sol.col_value = list(x)
            sol.value_valid = True
            self.h.setSolution(sol)
        return n

    def solve(self, stage: str, duals: bool = False) -> float:
        """Run HiGHS; ClearingError unless optimal; load the values (and `m.dual` when asked)."""
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise ClearingError(stage, self.h.modelStatusToString(status))
        sol = self.h.getSolution()
        if not sol.value_valid:
            raise ClearingError(stage, "optimal but no primal values")
        for v, x in zip(self.columns, sol.col_value):
            v.set_value(float(x), skip_validation=True)
        for v in self.unused:
            v.set_value(min(max(0.0, -np.inf if v.lb is None else v.lb), np.inf if v.ub is None else v.ub),
                        skip_validation=True)
        m = self.m
        if duals:
            if not self.relaxed or not sol.dual_valid:
                raise ClearingError(stage, "no valid duals (integer columns not fixed and relaxed)")
            m.del_component("dual")
            m.dual = pe.Suffix(direction=pe.Suffix.IMPORT)
            for row, y in zip(self.rows, sol.row_dual):
                m.dual[row.constraint] = m.dual.get(row.constraint, 0.0) + float(y)
        obj = pe.value(m.objective)
        if not np.isfinite(obj):
            raise ClearingError(stage, f"objective {obj}")
        return obj

    def fix_integers(self, values: dict[str, float]) -> None:
        """Fix every integer column at `values[name]` and make it continuous (in HiGHS and in the Pyomo
        model): what remains is the pricing LP, re-solved without recompiling."""
        if self.integer.size:
            x = np.array([values[self.columns[j].name] for j in self.integer])
            self.h.changeColsBounds(len(self.integer), self.integer, x, x)
            self.h.changeColsIntegrality(len(self.integer), self.integer,
                                         np.full(len(self.integer), highspy.HighsVarType.kContinuous))
        for v in self.m.component_data_objects(pe.Var, descend_into=True):
            if v.is_integer() or v.is_binary():
                v.fix(values[v.name])
        pe.TransformationFactory("core.relax_integer_vars").apply_to(self.m)
        self.relaxed = True


def solve_model(m: pe.ConcreteModel, stage: str = "clearing", duals: bool = False, mip_rel_gap: float = 1e-7):
    """Solve with HiGHS; raise ClearingError unless optimal; load values (and duals into `m.dual`).
    Fixed variables enter as constants (Pyomo's compiler); a model with free integer variables
    gives no duals."""
    hm = HighsModel(m, {"mip_rel_gap": mip_rel_gap})
    if duals and not hm.relaxed:
        raise ClearingError(stage, "duals asked of a model with integer variables: fix and relax them first")
    return hm.solve(stage, duals)


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
    for bl in mk.bilaterals:   # fixed: the kW injected at from_location (and withdrawn at to_location)
        out[bl.id] = np.array([float(bl.p_kw[t]) for t in T])
    out["iso"] = np.array([pe.value(m.iso_import[t]) - pe.value(m.iso_export[t]) for t in T])
    return out
