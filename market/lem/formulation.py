"""Variables and constraints of the LEM clearing (Pyomo), one function each.

Naming: `variable_<component>_<quantity>`, `constraint_<component>_<quantity>` (STYLE §5). Every
function takes the model `m`, the validated `schema.Market` (`m.market`), the linearised
`network_data.NetworkData` (`m.net`) and, for network rows, the critical set. Units: kW, kWh, pu;
the objective is in USD (a kW held for Δt hours at π USD/MWh costs π·kW·Δt/1000).

Sign conventions of the rows whose duals make the prices (Pyomo: dual = ∂objective/∂right-hand side):
- `constraint_location_injection[l,t]`: p_net − Σ schedule = −D_l,t, so −dual·1000/Δt is the DLMP;
- `constraint_system_balance[t]`: import − export + Σ(1 − LF)·p_net + shortfall − surplus = const,
  its dual·1000/Δt is the energy price at the substation;
- `constraint_line_flow_max/min[k,t]`, `constraint_voltage_max/min[v,t]`: the linearised limits.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pe
from pyomo.core.expr.numeric_expr import LinearExpression

from market.lem.network_data import CriticalSet


def _k(m) -> float:
    return m.market.interval_h / 1000.0  # USD per (kW · USD/MWh) over one interval


# --- variables ---------------------------------------------------------------------------------
def variable_offer_p(m) -> None:
    mk = m.market
    m.offer_steps = pe.Set(initialize=[(k, s) for k, o in enumerate(mk.offers) for s in range(len(o.steps))],
                           dimen=2, ordered=True)
    m.offer_p = pe.Var(m.offer_steps, m.T, bounds=lambda _, k, s, t: (0.0, mk.offers[k].steps[s].p_kw))


def variable_bid_p(m) -> None:
    mk = m.market
    m.bid_steps = pe.Set(initialize=[(k, s) for k, b in enumerate(mk.bids) for s in range(len(b.steps))],
                         dimen=2, ordered=True)
    m.bid_p = pe.Var(m.bid_steps, m.T, bounds=lambda _, k, s, t: (0.0, mk.bids[k].steps[s].p_kw))


def variable_block_accept(m) -> None:
    m.block_accept = pe.Var(range(len(m.market.blocks)), within=pe.Binary)


def variable_storage(m) -> None:
    st = m.market.storage
    m.S = pe.Set(initialize=range(len(st)), ordered=True)
    m.storage_charge = pe.Var(m.S, m.T, bounds=lambda _, i, t: (0.0, st[i].p_charge_max_kw))
    m.storage_discharge = pe.Var(m.S, m.T, bounds=lambda _, i, t: (0.0, st[i].p_discharge_max_kw))
    m.storage_soc = pe.Var(m.S, m.T, bounds=lambda _, i, t: (st[i].soc_min_kwh, st[i].e_max_kwh))
    m.storage_charging = pe.Var(m.S, m.T, within=pe.Binary)  # 1: may charge, 0: may discharge


def variable_unit(m) -> None:
    un = m.market.units
    m.U = pe.Set(initialize=range(len(un)), ordered=True)
    m.unit_on = pe.Var(m.U, m.T, within=pe.Binary)
    m.unit_start = pe.Var(m.U, m.T, within=pe.Binary)
    m.unit_stop = pe.Var(m.U, m.T, within=pe.Binary)
    m.unit_p = pe.Var(m.U, m.T, bounds=lambda _, i, t: (0.0, un[i].p_max_kw))


def variable_iso(m) -> None:
    iso = m.market.iso
    m.iso_import = pe.Var(m.T, bounds=(0.0, iso.import_max_kw))
    m.iso_export = pe.Var(m.T, bounds=(0.0, iso.export_max_kw))


def variable_location_p(m) -> None:
    """Net injection per node location and interval (kW, generation positive)."""
    m.L = pe.Set(initialize=m.net.intervals[0].locations, ordered=True)
    m.p_net = pe.Var(m.L, m.T)


def variable_slack(m, critical: CriticalSet) -> None:
    m.slack_shortfall = pe.Var(m.T, bounds=(0.0, None))   # unserved energy, kW
    m.slack_surplus = pe.Var(m.T, bounds=(0.0, None))     # spilled energy, kW
    m.K = pe.Set(initialize=critical.lines, ordered=True)
    m.V = pe.Set(initialize=critical.voltages, ordered=True)
    m.slack_line_over = pe.Var(m.K, m.T, bounds=(0.0, None))    # kW above +F^max
    m.slack_line_under = pe.Var(m.K, m.T, bounds=(0.0, None))   # kW below −F^max
    m.slack_voltage_high = pe.Var(m.V, m.T, bounds=(0.0, None))  # pu above V^max
    m.slack_voltage_low = pe.Var(m.V, m.T, bounds=(0.0, None))   # pu below V^min


# --- constraints -------------------------------------------------------------------------------
def _schedule_terms(m) -> dict:
    """{node location: [(share, resource kind, index)]}: who injects where."""
    mk, net = m.market, m.net
    at: dict[str, list] = {loc: [] for loc in m.L}
    for kind, family in (("offer", mk.offers), ("bid", mk.bids), ("block", mk.blocks),
                         ("storage", mk.storage), ("unit", mk.units)):
        for k, r in enumerate(family):
            for loc, share in net.split(r.location):
                at[loc].append((share, kind, k))
    for k, bl in enumerate(mk.bilaterals):  # fixed: +p at one end, −p at the other
        for end, where in (("bilateral_from", bl.from_location), ("bilateral_to", bl.to_location)):
            for loc, share in net.split(where):
                at[loc].append((share, end, k))
    return at


def _injection(m, kind: str, k: int, t: int):
    mk = m.market
    if kind == "offer":
        return sum(m.offer_p[k, s, t] for s in range(len(mk.offers[k].steps)))
    if kind == "bid":
        return -sum(m.bid_p[k, s, t] for s in range(len(mk.bids[k].steps)))
    if kind == "block":
        b = mk.blocks[k]
        return b.p_kw * m.block_ratio[k] if b.first_interval <= t < b.first_interval + b.n_intervals else 0.0
    if kind == "bilateral_from":
        return mk.bilaterals[k].p_kw[t]
    if kind == "bilateral_to":
        return -mk.bilaterals[k].p_kw[t]
    if kind == "storage":
        return m.storage_discharge[k, t] - m.storage_charge[k, t]
    return m.unit_p[k, t]


def constraint_location_injection(m) -> None:
    at = _schedule_terms(m)
    col = {loc: i for i, loc in enumerate(m.net.intervals[0].locations)}

    def rule(_, loc, t):
        d = float(m.net.intervals[t].fixed_load_kw[col[loc]])
        return m.p_net[loc, t] - sum(sh * _injection(m, kind, k, t) for sh, kind, k in at[loc]) == -d
    m.constraint_location_injection = pe.Constraint(m.L, m.T, rule=rule)


def constraint_system_balance(m) -> None:
    """Substation import with losses by loss factors (network_data's P_sub)."""
    def rule(_, t):
        iv = m.net.intervals[t]
        w = 1.0 - iv.loss_factor
        const = iv.substation_p_kw + float(w @ iv.base_injection_kw)
        return (m.iso_import[t] - m.iso_export[t] + sum(float(w[j]) * m.p_net[loc, t] for j, loc in enumerate(m.L))
                + m.slack_shortfall[t] - m.slack_surplus[t] == const)
    m.constraint_system_balance = pe.Constraint(m.T, rule=rule)


def _rows(m, ids: list[str], t: int, kind: str) -> dict:
    cache = m.__dict__.setdefault("_row_positions", {})
    pos = cache.get((kind, t))
    if pos is None:
        iv = m.net.intervals[t]
        have = iv.line_ids if kind == "line" else iv.voltage_locations
        pos = cache[(kind, t)] = {x: i for i, x in enumerate(have)}
    missing = [x for x in ids if x not in pos]
    if missing:
        raise KeyError(f"critical set names {kind} rows the network data does not hold: {missing}")
    return pos


def _linear(m, row, t: int, slack, sign: float):
    """(Σ_l a_l p_net[l,t] + sign·slack, Σ_l a_l p⁰_l) for a row a of a sensitivity matrix (zeros
    skipped), as one LinearExpression (a dense row built term by term costs seconds in Pyomo)."""
    cache = m.__dict__.setdefault("_p_net_by_t", {})
    p = cache.get(t)
    if p is None:
        p = cache[t] = [m.p_net[loc, t] for loc in m.L]
    p0 = m.net.intervals[t].base_injection_kw
    nz = np.nonzero(row)[0]
    expr = LinearExpression(constant=0.0, linear_coefs=[float(row[j]) for j in nz] + [sign],
                            linear_vars=[p[j] for j in nz] + [slack])
    return expr, float(row @ p0)


def constraint_line_flow(m) -> None:
    """−F^max − under ≤ F⁰ + PTDF·(p − p⁰) ≤ F^max + over, per critical line·phase and interval."""
    def side(sign):
        def rule(_, k, t):
            iv = m.net.intervals[t]
            i = _rows(m, [k], t, "line")[k]
            if sign > 0:
                expr, at0 = _linear(m, iv.ptdf[i], t, m.slack_line_over[k, t], -1.0)
                return expr <= float(iv.flow_max_kw[i] - iv.base_flow_kw[i]) + at0
            expr, at0 = _linear(m, iv.ptdf[i], t, m.slack_line_under[k, t], 1.0)
            return expr >= float(-iv.flow_max_kw[i] - iv.base_flow_kw[i]) + at0
        return rule
    m.constraint_line_flow_max = pe.Constraint(m.K, m.T, rule=side(+1))
    m.constraint_line_flow_min = pe.Constraint(m.K, m.T, rule=side(-1))


def constraint_voltage(m) -> None:
    """V^min − low ≤ V⁰ + dV/dP·(p − p⁰) ≤ V^max + high, per critical bus·phase and interval."""
    def side(sign):
        def rule(_, v, t):
            iv = m.net.intervals[t]
            i = _rows(m, [v], t, "voltage")[v]
            if sign > 0:
                expr, at0 = _linear(m, iv.dv_dp[i], t, m.slack_voltage_high[v, t], -1.0)
                return expr <= float(iv.v_max_pu[i] - iv.base_v_pu[i]) + at0
            expr, at0 = _linear(m, iv.dv_dp[i], t, m.slack_voltage_low[v, t], 1.0)
            return expr >= float(iv.v_min_pu[i] - iv.base_v_pu[i]) + at0
        return rule
    m.constraint_voltage_max = pe.Constraint(m.V, m.T, rule=side(+1))
    m.constraint_voltage_min = pe.Constraint(m.V, m.T, rule=side(-1))


def constraint_offer_availability(m) -> None:
    mk = m.market
    idx = [(k, t) for k, o in enumerate(mk.offers) if o.p_max_kw is not None for t in m.T]
    m.constraint_offer_availability = pe.Constraint(
        idx, rule=lambda _, k, t: sum(m.offer_p[k, s, t] for s in range(len(mk.offers[k].steps)))
        <= mk.offers[k].p_max_kw[t])


def constraint_storage_soc(m) -> None:
    st, dt = m.market.storage, m.market.interval_h

    def rule(_, i, t):
        prev = st[i].soc_initial_kwh if t == 0 else m.storage_soc[i, t - 1]
        return m.storage_soc[i, t] == (prev + st[i].eta_charge * dt * m.storage_charge[i, t]
                                       - dt / st[i].eta_discharge * m.storage_discharge[i, t])
    m.constraint_storage_soc = pe.Constraint(m.S, m.T, rule=rule)
    last = m.T.last()
    m.constraint_storage_soc_final = pe.Constraint(m.S, rule=lambda _, i: m.storage_soc[i, last] >= (
        st[i].soc_initial_kwh if st[i].soc_final_min_kwh is None else st[i].soc_final_min_kwh))


def constraint_storage_mode(m) -> None:
    """No simultaneous charge and discharge: charge ≤ P_c·mode, discharge ≤ P_d·(1 − mode)."""
    st = m.market.storage
    m.constraint_storage_charge_mode = pe.Constraint(
        m.S, m.T, rule=lambda _, i, t: m.storage_charge[i, t] <= st[i].p_charge_max_kw * m.storage_charging[i, t])
    m.constraint_storage_discharge_mode = pe.Constraint(
        m.S, m.T, rule=lambda _, i, t: m.storage_discharge[i, t]
        <= st[i].p_discharge_max_kw * (1 - m.storage_charging[i, t]))


def constraint_unit_commitment(m) -> None:
    """p_min·on ≤ p ≤ p_max·on; on_t − on_{t−1} = start_t − stop_t; min up/down times:
    Σ_{τ=t−UT+1..t} start_τ ≤ on_t and Σ_{τ=t−DT+1..t} stop_τ ≤ 1 − on_t."""
    un = m.market.units
    m.constraint_unit_p_min = pe.Constraint(m.U, m.T, rule=lambda _, i, t: m.unit_p[i, t] >= un[i].p_min_kw * m.unit_on[i, t])
    m.constraint_unit_p_max = pe.Constraint(m.U, m.T, rule=lambda _, i, t: m.unit_p[i, t] <= un[i].p_max_kw * m.unit_on[i, t])

    def transition(_, i, t):
        prev = (1.0 if un[i].initial_on else 0.0) if t == 0 else m.unit_on[i, t - 1]
        return m.unit_on[i, t] - prev == m.unit_start[i, t] - m.unit_stop[i, t]
    m.constraint_unit_transition = pe.Constraint(m.U, m.T, rule=transition)
    m.constraint_unit_min_up = pe.Constraint(m.U, m.T, rule=lambda _, i, t: sum(
        m.unit_start[i, s] for s in range(max(0, t - un[i].min_up_intervals + 1), t + 1)) <= m.unit_on[i, t])
    m.constraint_unit_min_down = pe.Constraint(m.U, m.T, rule=lambda _, i, t: sum(
        m.unit_stop[i, s] for s in range(max(0, t - un[i].min_down_intervals + 1), t + 1)) <= 1 - m.unit_on[i, t])


# --- objective ---------------------------------------------------------------------------------
def line_penalty_usd_per_mwh(market) -> float:
    p = market.penalties.line_usd_per_mwh
    return market.price_cap_usd_per_mwh / 2.0 if p is None else p


def objective_cost(m) -> None:
    """Offers − bids + ISO import − export + commitment costs + penalty-priced slacks (USD)."""
    mk, k = m.market, _k(m)
    iso = mk.iso
    export = iso.export_price_usd_per_mwh or iso.import_price_usd_per_mwh
    line_pen, v_pen = line_penalty_usd_per_mwh(mk), mk.penalties.voltage_usd_per_pu_h
    energy = sum(mk.offers[o].steps[s].price_usd_per_mwh * m.offer_p[o, s, t] for o, s in m.offer_steps for t in m.T)
    energy -= sum(mk.bids[b].steps[s].price_usd_per_mwh * m.bid_p[b, s, t] for b, s in m.bid_steps for t in m.T)
    energy += sum(b.price_usd_per_mwh * b.p_kw * b.n_intervals * m.block_ratio[j] for j, b in enumerate(mk.blocks))
    energy += sum(mk.storage[i].discharge_cost_usd_per_mwh * m.storage_discharge[i, t] for i in m.S for t in m.T)
    energy += sum(mk.units[i].price_usd_per_mwh * m.unit_p[i, t] for i in m.U for t in m.T)
    energy += sum(iso.import_price_usd_per_mwh[t] * m.iso_import[t] - export[t] * m.iso_export[t] for t in m.T)
    energy += sum(mk.price_cap_usd_per_mwh * m.slack_shortfall[t] - mk.price_floor_usd_per_mwh * m.slack_surplus[t]
                  for t in m.T)
    energy += sum(line_pen * (m.slack_line_over[x, t] + m.slack_line_under[x, t]) for x in m.K for t in m.T)
    fixed = sum(mk.units[i].no_load_usd_per_h * mk.interval_h * m.unit_on[i, t] + mk.units[i].startup_usd * m.unit_start[i, t]
                for i in m.U for t in m.T)
    fixed += sum(v_pen * mk.interval_h * (m.slack_voltage_high[v, t] + m.slack_voltage_low[v, t]) for v in m.V for t in m.T)
    m.objective = pe.Objective(expr=k * energy + fixed, sense=pe.minimize)
