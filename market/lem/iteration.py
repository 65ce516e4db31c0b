"""SCUC ↔ AC power flow iteration (ARCHITECTURE §5; the source article's Figure 2).

    iteration 0: linearise every interval at the AC solution of its fixed load (no market
                 injections, the feeder's controls settled); critical set = `critical` (default empty)
    iteration k: clear (MIP + pricing LP) → solve the AC power flow of the cleared schedule in
                 every interval, with the feeder's controls → every line·phase above 100 % of its
                 normal rating and every bus·phase voltage outside its limits joins the critical set
                 (never removed) → if none: done; else re-linearise every interval around the AC
                 solution of this schedule and clear again

It stops at `converged` (no violation), `iteration cap` (`max_iterations` clearings), or `stalled`
(nothing new to add, and every violation is one the clearing paid slack for, or the schedule or its
objective unchanged: the market cannot relieve what is left, e.g. a
limit held only by slack). The linearised limits are tightened by `rating_margin` (share of the
normal rating) and `voltage_margin_pu` so that the AC solution of a schedule that meets them sits
inside the true limits despite the linearisation error; the AC check uses the true limits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from market.lem.ac_flow import ACPowerFlow, OperatingPoint
from market.lem.network_data import CriticalSet, NetworkData, check_load_shape, interval_network, nodes_by_bus
from market.lem.pricing import Clearing, clear_dam
from market.lem.schema import Market

SCHEDULE_TOL_KW = 1e-3
OBJECTIVE_RTOL = 1e-6  # no new row and the objective unchanged to this: stalled
LOADING_TOL_PCT = 1e-6  # AC loading / voltage this far inside the tightened limit still counts as at it
VOLTAGE_TOL_PU = 1e-9


@dataclass(frozen=True)
class ACViolation:
    """A limit the AC power flow of a schedule breaks: a line·phase above its normal rating (`kind`
    "line", value/limit in A) or a bus·phase voltage outside its limits ("voltage", pu)."""
    interval: int
    kind: str
    where: str       # branch id or location id
    value: float
    limit: float
    unit: str


@dataclass
class IterationReport:
    iteration: int
    objective_usd: float
    pricing_objective_usd: float
    critical_lines: int              # critical-set size the clearing of this iteration used
    critical_voltages: int
    line_violations: int             # in the AC solution of this iteration's schedule (row·interval)
    voltage_violations: int
    max_loading_pct: float
    v_min_pu: float
    v_max_pu: float
    added_lines: list[str]
    added_voltages: list[str]
    slacks_used: int
    clear_s: float
    power_flow_s: float
    linearise_s: float


@dataclass
class IteratedClearing:
    clearing: Clearing               # of the last iteration (its schedule was checked by the AC flow)
    net: NetworkData                 # the linearisation that clearing used
    critical: CriticalSet            # the final critical set (as used by the last clearing + added)
    iterations: list[IterationReport]
    status: str                      # "converged" | "iteration cap" | "stalled"
    violations: list[ACViolation]    # left in the last schedule's AC solution (empty if converged)
    points: list[OperatingPoint]     # the AC solution of the last schedule, per interval
    factorizations: int
    timings_s: dict[str, float] = field(default_factory=dict)
    note: str = ""                   # how it ended, when not plain (e.g. a two-cycle of the control state)

    @property
    def converged(self) -> bool:
        return self.status == "converged"


def node_injections(market: Market, net: NetworkData, schedule_kw: dict[str, np.ndarray]) -> np.ndarray:
    """(node locations × intervals) market net injection (kW, generation positive) of a schedule."""
    locs = net.intervals[0].locations
    col = {loc: i for i, loc in enumerate(locs)}
    out = np.zeros((len(locs), market.intervals))
    for family in ("offers", "bids", "blocks", "storage", "units"):
        for r in getattr(market, family):
            for loc, share in net.split(r.location):
                out[col[loc]] += share * np.asarray(schedule_kw[r.id], float)
    for bl in getattr(market, "bilaterals", []):   # fixed: +p at from_location, −p at to_location
        for sign, where in ((1.0, bl.from_location), (-1.0, bl.to_location)):
            for loc, share in net.split(where):
                out[col[loc]] += sign * share * np.asarray(bl.p_kw, float)
    return out


def near_limits(point: OperatingPoint, source: str, rating_margin: float, voltage_margin_pu: float
                ) -> tuple[set[str], set[str]]:
    """(branch ids, bus·phase ids) of the AC solution at or beyond the *tightened* limits the linearised
    rows enforce (normal rating × (1 − margin), [V^min + margin, V^max − margin]): the rows a model
    with every limit would hold binding here. Off the source bus (its voltage is the source's)."""
    snap = point.snapshot
    lines = {snap.branch_ids[i] for i in np.nonzero(snap.rated & (snap.loading_pct > 100.0 * (1.0 - rating_margin)
                                                                  + LOADING_TOL_PCT))[0]}
    v = snap.v_pu
    off = snap.v_checked & ~np.array([x.startswith(source + ".") for x in snap.locations])
    near = off & ((v > snap.v_max_pu - voltage_margin_pu + VOLTAGE_TOL_PU) | (v < snap.v_min_pu + voltage_margin_pu
                                                                             - VOLTAGE_TOL_PU))
    return lines, {snap.locations[i] for i in np.nonzero(near)[0]}


def violations_of(point: OperatingPoint) -> list[ACViolation]:
    t = point.interval
    out = [ACViolation(t, "line", o.branch_id, o.i_amps, o.rating_amps, "A") for o in point.overloads()]
    out += [ACViolation(t, "voltage", v.location, v.v_pu, v.v_min_pu if v.side == "under" else v.v_max_pu, "pu")
            for v in point.voltage_violations()]
    return out


def _solve_all(ac: ACPowerFlow, shape, injections) -> tuple[list[OperatingPoint], float]:
    """AC solution per interval (controls settled) and the time it took."""
    t0 = time.perf_counter()
    points = [ac.solve(t, s, None if injections is None else injections[:, t]) for t, s in enumerate(shape)]
    return points, time.perf_counter() - t0


def _linearise_all(ac: ACPowerFlow, points, loads, shape, nodes_of, critical: CriticalSet, rating_margin,
                   voltage_margin_pu) -> tuple[list, float]:
    """Linearisation of every point, with the rows of `critical` only (each point keeps its own solved
    state, so this runs after every interval was solved and the critical set updated)."""
    t0 = time.perf_counter()
    ivs = [interval_network(pt.result, pt.snapshot, ac.locations, nodes_of, loads * s, pt.injection_kw,
                            rating_margin, voltage_margin_pu, critical.lines, critical.voltages)
           for pt, s in zip(points, shape)]
    return ivs, time.perf_counter() - t0


def _beyond_margins(slacks, net: NetworkData, rating_margin: float, voltage_margin_pu: float) -> list:
    """Line/voltage slack uses larger than the margins the linearised limits were tightened by (within
    them the true limit still holds in the linear model)."""
    out = []
    for x in slacks:
        if x.family.startswith("voltage"):
            if x.amount > voltage_margin_pu + 1e-9:
                out.append(x)
        elif x.family.startswith("line"):
            iv = net.intervals[x.interval]
            f_max = float(iv.flow_max_kw[iv.line_ids.index(x.where)])
            if x.amount > f_max * rating_margin / (1.0 - rating_margin) + 1e-6:
                out.append(x)
    return out


def clear_with_ac(market: Market, feeder, load_shape: list[float] | None = None, critical: CriticalSet | None = None,
                  max_iterations: int = 8, rating_margin: float = 0.01, voltage_margin_pu: float = 0.002,
                  controls: bool | None = None, progress=None, mip_rel_gap: float = 1e-4,
                  warm_start: bool = True, fixed: dict[str, float] | None = None,
                  fixed_point_rtol: float | None = 1e-5) -> IteratedClearing:
    """Clear `market` on `feeder` (a market.network Feeder) iterating with the AC power flow (module doc).
    `progress(line)` is called with one line per iteration when given. Each MIP is solved to
    `mip_rel_gap` (1e-4: the network rows with their penalty slacks make the last digits slow to prove).
    `warm_start`: each MIP after the first starts from the previous clearing's solution (HiGHS
    completes it from its integer values where the new critical rows make it infeasible); the
    optimum it proves is the same. `fixed`: variables held by name in every clearing (e.g. blocks
    excluded as paradoxically accepted, `blocks.clear_without_paradox`). `timings_s` holds the totals
    per stage, with the clearing split into build_s (Pyomo), compile_s (into HiGHS), mip_s and lp_s.
    `fixed_point_rtol`: "converged" also needs the linearisation to be that of the schedule's own AC
    solution: the schedule unchanged (to SCHEDULE_TOL_KW) or the objective unchanged to this relative
    tolerance since the previous clearing (None: stop at the first schedule without violations,
    linearised wherever the previous one was)."""
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be ≥ 1, got {max_iterations}")
    shape = check_load_shape(market.intervals, load_shape)
    t_start = time.perf_counter()
    ac = ACPowerFlow(feeder, controls)
    nodes_of = nodes_by_bus(ac.locations)
    loads = ac.nominal_load_kw
    source = ac.base.source.bus.lower()
    critical = CriticalSet(list((critical or CriticalSet()).lines), list((critical or CriticalSet()).voltages))
    base_points, pf_s = _solve_all(ac, shape, None)
    ivs, lin_s = _linearise_all(ac, base_points, loads, shape, nodes_of, critical, rating_margin, voltage_margin_pu)
    net = NetworkData(source, ivs, nodes_of)
    timings = {"base_power_flow_s": pf_s, "base_linearise_s": lin_s, "clear_s": 0.0, "power_flow_s": 0.0,
               "linearise_s": 0.0, "build_s": 0.0, "compile_s": 0.0, "mip_s": 0.0, "lp_s": 0.0}
    reports: list[IterationReport] = []
    previous = None
    previous_clearing = None
    objectives: list[float] = []
    last_clean = None
    note = ""
    status = "iteration cap"
    for it in range(max_iterations):
        used = CriticalSet(list(critical.lines), list(critical.voltages))
        t0 = time.perf_counter()
        clearing = clear_dam(market, net, used, mip_rel_gap, start=None if previous_clearing is None else
                             previous_clearing.values if warm_start else None, timings=timings, fixed=fixed)
        used_net, previous_clearing = net, clearing
        clear_s = time.perf_counter() - t0
        inj = node_injections(market, net, clearing.schedule_kw)
        points, pf_s = _solve_all(ac, shape, inj)
        violations = [v for pt in points for v in violations_of(pt)]
        near = [near_limits(pt, source, rating_margin, voltage_margin_pu) for pt in points]
        added_lines = sorted(set().union(*(x[0] for x in near)) - set(critical.lines))
        added_voltages = sorted(set().union(*(x[1] for x in near)) - set(critical.voltages))
        critical.lines += added_lines
        critical.voltages += added_voltages
        lin_s = 0.0
        v_all = np.concatenate([pt.snapshot.v_pu[pt.snapshot.v_checked] for pt in points])
        rep = IterationReport(it, clearing.objective_usd, clearing.pricing_objective_usd, len(used.lines),
                              len(used.voltages), sum(v.kind == "line" for v in violations),
                              sum(v.kind == "voltage" for v in violations),
                              float(max(np.max(pt.snapshot.loading_pct) for pt in points)),
                              float(v_all.min()), float(v_all.max()), added_lines, added_voltages,
                              len(clearing.slacks), clear_s, pf_s, lin_s)
        reports.append(rep)
        for k, v in (("clear_s", clear_s), ("power_flow_s", pf_s), ("linearise_s", lin_s)):
            timings[k] += v
        if progress is not None:
            progress(f"iteration {it}: objective {rep.objective_usd:.2f} USD, critical set "
                     f"{rep.critical_lines} lines + {rep.critical_voltages} voltages, AC check: "
                     f"{rep.line_violations} overloads, {rep.voltage_violations} voltage violations")
        fixed_point = fixed_point_rtol is None or previous is not None and (
            float(np.max(np.abs(inj - previous[0]))) < SCHEDULE_TOL_KW
            or abs(clearing.objective_usd - previous[1]) <= fixed_point_rtol * max(1.0, abs(previous[1])))
        clean = (not violations and not added_lines and not added_voltages
                 and not _beyond_margins(clearing.slacks, used_net, rating_margin, voltage_margin_pu))
        if clean and fixed_point:
            status = "converged"
            break
        objectives.append(clearing.objective_usd)
        cycle = (fixed_point_rtol is not None and len(objectives) >= 3 and not added_lines and not added_voltages
                 and abs(objectives[-1] - objectives[-3]) <= fixed_point_rtol * max(1.0, abs(objectives[-3])))
        if cycle and (clean or last_clean is not None and last_clean[0] == it - 1):
            # a two-cycle of the linearisation (a regulator's tap flips between two positions from one
            # schedule to the next): no fixed point exists; keep the member without violations
            if not clean:
                _, clearing, used_net, points, violations = last_clean
            status, note = "converged", "two-cycle of the linearisation (control state); the clean member kept"
            break
        if clean:
            last_clean = (it, clearing, used_net, points, violations)
        held = {(s.where, s.interval) for s in clearing.slacks}
        stuck = not added_lines and not added_voltages and bool(violations) and (
            fixed_point and all((v.where, v.interval) in held for v in violations)  # it chose to pay slack there
            or previous is not None and (float(np.max(np.abs(inj - previous[0]))) < SCHEDULE_TOL_KW
                      or abs(clearing.objective_usd - previous[1]) <= OBJECTIVE_RTOL * max(1.0, abs(previous[1]))))
        if stuck:
            status = "stalled"
            break
        previous = (inj, clearing.objective_usd)
        new_ivs, lin_s = _linearise_all(ac, points, loads, shape, nodes_of, critical, rating_margin, voltage_margin_pu)
        reports[-1].linearise_s = lin_s
        timings["linearise_s"] += lin_s
        net = NetworkData(source, new_ivs, nodes_of)
    timings["total_s"] = time.perf_counter() - t_start
    return IteratedClearing(clearing, used_net, critical, reports, status, violations, points, ac.factorizations, timings,
                            note)
