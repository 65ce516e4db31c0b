"""The result tables of a clearing, as (columns, rows) for a CSV writer; units in the column names.

`dlmp_table` is the file `colorgrid te run --dlmp-csv` reads (bus, phase, interval,
dlmp_usd_per_mwh); a phase is the node number, or `abc` for a three-phase resource or the ISO.
"""
from __future__ import annotations

from market.lem.iteration import IteratedClearing
from market.lem.schema import Market
from market.lem.settlement import Settlement

DLMP_COLUMNS = ["bus", "phase", "interval", "dlmp_usd_per_mwh", "energy", "loss", "congestion", "voltage"]
SCHEDULE_COLUMNS = ["resource", "kind", "bus", "phase", "interval", "p_kw", "q_kvar"]
SETTLEMENT_COLUMNS = ["party", "kind", "bus", "phase", "interval", "p_kw", "price_usd_per_mwh", "amount_usd"]
CRITICAL_COLUMNS = ["kind", "id", "added_in_iteration"]
ITERATION_COLUMNS = ["iteration", "objective_usd", "pricing_objective_usd", "critical_lines", "critical_voltages",
                     "line_violations", "voltage_violations", "max_loading_pct", "v_min_pu", "v_max_pu",
                     "added_lines", "added_voltages", "slacks_used", "clear_s", "power_flow_s", "linearise_s"]
SLACK_COLUMNS = ["family", "where", "interval", "amount", "unit"]
VIOLATION_COLUMNS = ["interval", "kind", "where", "value", "limit", "unit"]


def bus_phase(location: str) -> tuple[str, str]:
    bus, _, node = location.partition(".")
    return bus, node or "abc"


def dlmp_table(result: IteratedClearing) -> list[list]:
    p = result.clearing.prices
    rows = []
    for j, loc in enumerate(p.locations):
        bus, phase = bus_phase(loc)
        for t in range(p.dlmp_usd_per_mwh.shape[1]):
            rows.append([bus, phase, t, float(p.dlmp_usd_per_mwh[j, t]), float(p.energy[j, t]), float(p.loss[j, t]),
                         float(p.congestion[j, t]), float(p.voltage[j, t])])
    return rows


def schedule_table(market: Market, result: IteratedClearing) -> list[list]:
    """Every resource's cleared kW per interval (q_kvar 0: reactive power is not cleared yet)."""
    sched = result.clearing.schedule_kw
    rows = []
    for kind, family in (("offer", market.offers), ("bid", market.bids), ("block", market.blocks),
                         ("storage", market.storage), ("unit", market.units)):
        for r in family:
            bus, phase = bus_phase(r.location)
            rows += [[r.id, kind, bus, phase, t, float(v) + 0.0, 0.0] for t, v in enumerate(sched[r.id])]
    rows += [["iso", "iso", result.net.substation, "abc", t, float(v) + 0.0, 0.0] for t, v in enumerate(sched["iso"])]
    return rows


def settlement_table(s: Settlement) -> list[list]:
    """One row per party and interval, then one `interval = total` row per party."""
    rows = []
    for r in s.rows:
        bus, phase = bus_phase(r.location)
        rows.append([r.party, r.kind, bus, phase, r.interval, r.p_kw + 0.0, r.price_usd_per_mwh, r.amount_usd + 0.0])
    kinds = {r.party: (r.kind, r.location) for r in s.rows}
    for party, total in s.totals_usd.items():
        kind, loc = kinds[party]
        bus, phase = bus_phase(loc)
        rows.append([party, kind, bus, phase, "total", None, None, total])
    return rows


def critical_table(result: IteratedClearing) -> list[list]:
    rows = []
    for rep in result.iterations:
        rows += [["line", x, rep.iteration] for x in rep.added_lines]
        rows += [["voltage", x, rep.iteration] for x in rep.added_voltages]
    seen = {r[1] for r in rows}
    rows += [["line", x, "given"] for x in result.critical.lines if x not in seen]
    rows += [["voltage", x, "given"] for x in result.critical.voltages if x not in seen]
    return rows


def iteration_table(result: IteratedClearing) -> list[list]:
    return [[r.iteration, r.objective_usd, r.pricing_objective_usd, r.critical_lines, r.critical_voltages,
             r.line_violations, r.voltage_violations, r.max_loading_pct, r.v_min_pu, r.v_max_pu,
             " ".join(r.added_lines), " ".join(r.added_voltages), r.slacks_used, r.clear_s, r.power_flow_s,
             r.linearise_s] for r in result.iterations]


def slack_table(result: IteratedClearing) -> list[list]:
    return [[s.family, s.where, s.interval, s.amount, s.unit] for s in result.clearing.slacks]


def violation_table(result: IteratedClearing) -> list[list]:
    return [[v.interval, v.kind, v.where, v.value, v.limit, v.unit] for v in result.violations]
