"""The result tables of a clearing, as (columns, rows) for a CSV writer; units in the column names.

`dlmp_table` is the file `colorgrid te run --dlmp-csv` reads (bus, phase, interval,
dlmp_usd_per_mwh); a phase is the node number, or `abc` for a three-phase resource or the ISO.
"""
from __future__ import annotations

from market.lem.iteration import IteratedClearing
from market.lem.schema import Market
from market.lem.settlement import Settlement

DLMP_COLUMNS = ["bus", "phase", "interval", "dlmp_usd_per_mwh", "energy", "loss", "congestion", "voltage",
                "q_price_usd_per_mvarh"]
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
    return clearing_dlmp_table(result.clearing.prices)


def schedule_table(market: Market, result: IteratedClearing) -> list[list]:
    """Every resource's cleared kW per interval, and kvar where it has reactive capability (else 0)."""
    sched, qs = result.clearing.schedule_kw, result.clearing.schedule_kvar
    rows = []
    for kind, family in (("offer", market.offers), ("bid", market.bids), ("block", market.blocks),
                         ("storage", market.storage), ("unit", market.units)):
        for r in family:
            bus, phase = bus_phase(r.location)
            q = qs.get(r.id)
            rows += [[r.id, kind, bus, phase, t, float(v) + 0.0, 0.0 if q is None else float(q[t]) + 0.0]
                     for t, v in enumerate(sched[r.id])]
    for bl in market.bilaterals:   # both ends: +p at from_location, −p at to_location
        for sign, where in ((1.0, bl.from_location), (-1.0, bl.to_location)):
            bus, phase = bus_phase(where)
            rows += [[bl.id, "bilateral", bus, phase, t, sign * float(v) + 0.0, 0.0] for t, v in enumerate(bl.p_kw)]
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


COMMITMENT_COLUMNS = ["kind", "resource", "interval", "value"]
RT_SCHEDULE_COLUMNS = ["resource", "kind", "bus", "phase", "interval", "da_interval", "da_p_kw", "p_kw", "q_kvar"]
TWO_SETTLEMENT_COLUMNS = ["party", "kind", "bus", "phase", "interval", "da_p_kw", "da_price_usd_per_mwh", "rt_p_kw",
                          "rt_price_usd_per_mwh", "da_amount_usd", "deviation_amount_usd", "amount_usd"]


def commitment_table(market: Market, clearing) -> list[list]:
    """The DA decisions the real-time market holds: unit on/off per interval (1/0) and the accepted share
    of each block (0: rejected), read back by `rtm.DamReference.read`."""
    rows = [["unit", u.id, t, clearing.integers[f"unit_on[{i},{t}]"]] for i, u in enumerate(market.units)
            for t in range(market.intervals)]
    rows += [["block", b.id, b.first_interval, float(clearing.schedule_kw[b.id][b.first_interval]) / b.p_kw]
             for b in market.blocks]
    return rows


def rt_schedule_table(market: Market, dam, rt) -> list[list]:
    """Every resource's RT kW per 5-min interval beside its DA kW of that interval's hour."""
    sched, qs, rows = rt.clearing.schedule_kw, rt.clearing.schedule_kvar, []
    for kind, family in (("offer", market.offers), ("bid", market.bids), ("block", market.blocks),
                         ("storage", market.storage), ("unit", market.units)):
        for r in family:
            bus, phase = bus_phase(r.location)
            rt_p, q = sched.get(r.id), qs.get(r.id)
            rows += [[r.id, kind, bus, phase, t, h, float(dam.schedule_kw[r.id][h]) + 0.0,
                      (0.0 if rt_p is None else float(rt_p[t])) + 0.0, 0.0 if q is None else float(q[t]) + 0.0]
                     for t, h in enumerate(rt.hours)]
    for bl in market.bilaterals:
        for sign, where in ((1.0, bl.from_location), (-1.0, bl.to_location)):
            bus, phase = bus_phase(where)
            rows += [[bl.id, "bilateral", bus, phase, t, h, sign * bl.p_kw[h] + 0.0, sign * bl.p_kw[h] + 0.0, 0.0]
                     for t, h in enumerate(rt.hours)]
    rows += [["iso", "iso", rt.net.substation, "abc", t, h, float(dam.schedule_kw["iso"][h]) + 0.0,
              float(sched["iso"][t]) + 0.0, 0.0] for t, h in enumerate(rt.hours)]
    return rows


def two_settlement_table(s) -> list[list]:
    rows = []
    for r in s.rows:
        bus, phase = bus_phase(r.location)
        rows.append([r.party, r.kind, bus, phase, r.interval, r.da_p_kw + 0.0, r.da_price_usd_per_mwh, r.rt_p_kw + 0.0,
                     r.rt_price_usd_per_mwh, r.da_amount_usd + 0.0, r.deviation_amount_usd + 0.0, r.amount_usd + 0.0])
    kinds = {r.party: (r.kind, r.location) for r in s.rows}
    for party, total in s.totals_usd.items():
        kind, loc = kinds[party]
        bus, phase = bus_phase(loc)
        rows.append([party, kind, bus, phase, "total", None, None, None, None, None, None, total])
    return rows


def clearing_dlmp_table(prices) -> list[list]:
    """dlmp.csv rows of a `pricing.Prices`."""
    rows = []
    for j, loc in enumerate(prices.locations):
        bus, phase = bus_phase(loc)
        for t in range(prices.dlmp_usd_per_mwh.shape[1]):
            q = 0.0 if prices.q_price_usd_per_mvarh is None else float(prices.q_price_usd_per_mvarh[j, t]) + 0.0
            rows.append([bus, phase, t, float(prices.dlmp_usd_per_mwh[j, t]), float(prices.energy[j, t]),
                         float(prices.loss[j, t]), float(prices.congestion[j, t]), float(prices.voltage[j, t]), q])
    return rows


BLOCK_COLUMNS = ["block", "status", "ratio", "surplus_usd", "opportunity_cost_usd", "avg_price_usd_per_mwh"]


def block_table(report) -> list[list]:
    """blocks.csv: every block's acceptance at the DLMPs (blocks.block_report)."""
    return [[r.id, r.status, r.ratio, r.surplus_usd + 0.0, r.opportunity_cost_usd, r.avg_price_usd_per_mwh]
            for r in report]
