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

from market.lem import blocks, energy_limits, reactive
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
    reactive.variable_resource_q(m)
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
    reactive.constraint_reactive_terms(m)
    f.objective_cost(m)
    return m


MODE_TOL_KW = 1e-6  # charge and discharge both above this: the storage mode is made a binary
INTEGRAL_TOL = 1e-6  # an integer column this close to an integer in the LP relaxation counts as integral


def _storage_mode_pairs(m: pe.ConcreteModel, columns) -> np.ndarray:
    """(k × 3) column positions of each storage mode binary with its charge and discharge columns."""
    col = {id(v): j for j, v in enumerate(columns)}
    out = []
    if hasattr(m, "storage_charging"):
        for idx, mode in m.storage_charging.items():
            j = col.get(id(mode))
            c, d = col.get(id(m.storage_charge[idx])), col.get(id(m.storage_discharge[idx]))
            if j is not None and c is not None and d is not None:
                out.append((j, c, d))
    return np.array(out, dtype=np.int32).reshape(-1, 3)


# HiGHS's sub-MIP heuristics (RINS, RENS, root reduced cost) cost seconds on the clearing's small MIPs
# (IEEE 123, one interval, 17 binaries: 2.2 s CPU in 27 sub-MIPs, 0.28 s without, the same optimum);
# branch and bound closes these gaps faster than the heuristics find incumbents.
HIGHS_OPTIONS = {"output_flag": False, "dual_feasibility_tolerance": 1e-10, "primal_feasibility_tolerance": 1e-9,
                 "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                 "mip_heuristic_run_root_reduced_cost": False}


class HighsModel:
    """A built clearing compiled once into HiGHS (Pyomo's linear standard-form compiler: the rows and
    columns as sparse matrices, no per-constraint expression walk), solved as the MIP, then re-solved
    in place as the fixed-integer pricing LP (`fix_integers`): one compilation serves both solves.

    Rows keep Pyomo's orientation (`mixed_form`: = / ≤ / ≥), so a HiGHS row dual is ∂objective/∂rhs
    of that Pyomo constraint, the convention `pricing.dlmp_components` states. Nothing is read before
    HiGHS reports `Optimal` (`ClearingError` otherwise)."""

    def __init__(self, m: pe.ConcreteModel, options: dict | None = None, lp_first: bool = True):
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
        self.mode_pairs = _storage_mode_pairs(m, self.columns)  # (mode, charge, discharge) columns
        lazy = set(self.mode_pairs[:, 0].tolist())
        if self.integer.size:
            integrality = np.full(len(self.columns), highspy.HighsVarType.kContinuous)
            integrality[[j for j in self.integer if j not in lazy]] = highspy.HighsVarType.kInteger
            lp.integrality_ = list(integrality)
        self.lazy_modes = np.array(sorted(lazy), dtype=np.int32)  # storage modes left continuous so far
        with capture_output(capture_fd=True):  # HiGHS prints its banner on construction
            self.h = highspy.Highs()
        for key, value in {**HIGHS_OPTIONS, **(options or {})}.items():
            self.h.setOptionValue(key, value)
        status = self.h.passModel(lp)
        if status != highspy.HighsStatus.kOk:
            raise ClearingError("compile", f"HiGHS refused the model ({status})")
        self.relaxed = not self.integer.size
        self.lp_first, self.lp_relaxation_exact = lp_first, False
        self.bound: float | None = None
        self._start, self._keys = None, None
        # free variables that no row or objective term holds (any value in bounds is optimal): 0 clipped
        seen = {id(v) for v in self.columns}
        self.unused = [v for v in m.component_data_objects(pe.Var, descend_into=True) if not v.fixed and id(v) not in seen]

    def column_keys(self) -> list[tuple]:
        """(component name, index) of every column, e.g. ("unit_on", (0, 3)): a variable's key across
        models built from the same market (cheaper than Pyomo's string names)."""
        if self._keys is None:
            key = {id(v): (comp.local_name, idx) for comp in self.m.component_objects(pe.Var, descend_into=True)
                   for idx, v in comp.items()}
            self._keys = [key[id(v)] for v in self.columns]
        return self._keys

    def values_by_key(self) -> dict[tuple, float]:
        """{column key: value} of the last solve (a MIP start for the next model: `set_start`)."""
        return {k: v.value for k, v in zip(self.column_keys(), self.columns)}

    def set_start(self, values: dict[tuple, float]) -> int:
        """Offer a MIP start: column values by `column_keys` (e.g. the previous clearing's solution;
        missing keys start at 0). HiGHS checks it, completes it from its integer values if it is not
        feasible as given, and keeps it as the first incumbent. Returns the number of values used."""
        x = np.zeros(len(self.columns))
        n = 0
        for j, key in enumerate(self.column_keys()):
            val = values.get(key)
            if val is not None:
                x[j], n = val, n + 1
        if n:
            sol = highspy.HighsSolution()
            sol.col_value = list(x)
            sol.value_valid = True
            self.h.setSolution(sol)
            self._start = sol
        return n

    def _run(self, stage: str):
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            # a hot-started re-solve can end 'Unknown' where the same model from scratch is optimal
            # (IEEE 123, generated offers: the in-place pricing LP): drop the basis, run once more
            self.h.clearSolver()
            self.h.run()
            status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise ClearingError(stage, self.h.modelStatusToString(status))
        sol = self.h.getSolution()
        if not sol.value_valid:
            raise ClearingError(stage, "optimal but no primal values")
        return sol

    def _set_integrality(self, cols: np.ndarray, integer: bool) -> None:
        kind = highspy.HighsVarType.kInteger if integer else highspy.HighsVarType.kContinuous
        self.h.changeColsIntegrality(len(cols), cols.astype(np.int32), np.full(len(cols), kind))

    def _simultaneous(self, x: np.ndarray) -> np.ndarray:
        """Lazy storage mode columns whose unit charges and discharges at once in `x`."""
        pairs = self.mode_pairs[np.isin(self.mode_pairs[:, 0], self.lazy_modes)]
        return pairs[(x[pairs[:, 1]] > MODE_TOL_KW) & (x[pairs[:, 2]] > MODE_TOL_KW), 0]

    def _with_modes(self, sol, x: np.ndarray):
        """The solution with every lazy (continuous) storage mode at 1 where its unit charges, else 0."""
        pairs = self.mode_pairs[np.isin(self.mode_pairs[:, 0], self.lazy_modes)]
        x[pairs[:, 0]] = (x[pairs[:, 1]] > MODE_TOL_KW).astype(float)
        sol.col_value = list(x)
        return sol

    def _run_lp_first(self, stage: str):
        """The LP relaxation; its solution if every integer column is integral there (and no storage
        charges and discharges at once): then it is optimal for the MIP too (a relaxation's optimum
        that is feasible), the bound is exact, and the pricing LP re-starts from its basis. None
        otherwise (integrality restored)."""
        ints = np.setdiff1d(self.integer, self.lazy_modes)
        self._set_integrality(ints, False)
        sol = self._run(stage)
        x = np.asarray(sol.col_value, float)
        if np.all(np.abs(x[ints] - np.round(x[ints])) <= INTEGRAL_TOL) and not self._simultaneous(x).size:
            x[ints] = np.round(x[ints])
            self.bound, self.lp_relaxation_exact = float(self.h.getInfo().objective_function_value), True
            return self._with_modes(sol, x)
        self._set_integrality(ints, True)
        if self._start is not None:
            self.h.setSolution(self._start)
        return None

    def _run_mip(self, stage: str):
        """The MIP with the storage modes lazy: a mode is made integer only where the solution charges
        and discharges the unit at once (then re-solved). Exact: the model with the remaining modes
        continuous is a relaxation (modes carry no cost), and its optimum, with each continuous mode
        set to 1 where the unit charges and 0 otherwise, is feasible for the full MIP at the same
        objective. Most clearings need no storage binary at all (no reason to charge and discharge at
        once while prices are above zero); HiGHS otherwise spends seconds proving what the LP shows."""
        if self.lp_first and self.integer.size > self.lazy_modes.size:
            sol = self._run_lp_first(stage)
            if sol is not None:
                return sol
        while True:
            sol = self._run(stage)
            x = np.asarray(sol.col_value, float)
            self.bound = float(self.h.getInfo().mip_dual_bound) if self.integer.size > self.lazy_modes.size \
                else float(self.h.getInfo().objective_function_value)
            both = self._simultaneous(x)
            if not both.size:
                return self._with_modes(sol, x)
            self._set_integrality(both, True)
            self.lazy_modes = np.setdiff1d(self.lazy_modes, both).astype(np.int32)

    def solve(self, stage: str, duals: bool = False) -> float:
        """Run HiGHS; ClearingError unless optimal; load the values (and `m.dual` when asked)."""
        sol = self._run(stage) if self.relaxed else self._run_mip(stage)
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
        obj = float(self.h.getInfo().objective_function_value)  # = the Pyomo objective (fixed terms in the offset)
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
            if v.is_integer() or v.is_binary():  # what core.relax_integer_vars does, without its walk
                lb, ub = v.bounds
                v.domain = pe.Reals
                v.setlb(lb)
                v.setub(ub)
                v.fix(values[v.name])
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
