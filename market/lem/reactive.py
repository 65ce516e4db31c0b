"""Reactive capability in the clearing and its price (issue 15: reactive prices per location).

Resources that give `q_min_kvar`/`q_max_kvar` (offers, storage, units) get a reactive injection
q_r,t (kvar, injection positive; a unit only while on). It enters the network rows through the
reactive sensitivities of `network_data` (q⁰ = 0: the linearisation points carry no market Q):

    balance   … − Σ_l LF^q_l · q_l,t                 (losses change by LF^q per kvar)
    line·phase  F⁰ + PTDF·Δp + PTDF^q·q              voltage  V⁰ + dV/dP·Δp + dV/dQ·q

with q_l = Σ_r share_{r,l}·q_r. The terms are added to the rows `formulation` built
(`constraint_reactive_terms`, only when some resource has reactive capability), so their duals keep
the sign conventions of `pricing.dlmp_components`, which names the reactive price, USD/Mvarh, of
1 kvar more reactive injection (= 1 kvar less reactive load) at l (K = 1000/Δt):

    q_price_l,t = K·(−λ_t·LF^q_l + Σ_k (y_max,k + y_min,k)·PTDF^q_kl + Σ_v (y_max,v + y_min,v)·dV/dQ_vl)

Reactive capability is free: where a resource's q is strictly inside its range, the price at its
location is 0 (complementary slackness). Known limit: the AC check of the iteration (`ac_flow`) is
solved with the cleared P only, so a schedule that leans on Q for its voltages is not yet confirmed
by the AC power flow.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pe

FAMILIES = ("offers", "storage", "units")


def capable(market) -> list[tuple[str, int]]:
    return [(fam, k) for fam in FAMILIES for k, r in enumerate(getattr(market, fam)) if r.q_min_kvar is not None]


def variable_resource_q(m) -> None:
    mk = m.market
    m.QR = pe.Set(initialize=capable(mk), dimen=2, ordered=True)

    def bounds(_, fam, k, t):
        r = getattr(mk, fam)[k]
        if fam == "units":   # coupled to the commitment below
            return (min(r.q_min_kvar, 0.0), max(r.q_max_kvar, 0.0))
        return (r.q_min_kvar, r.q_max_kvar)
    m.resource_q = pe.Var(m.QR, m.T, bounds=bounds)


def constraint_unit_q(m) -> None:
    """q_min·on ≤ q ≤ q_max·on for units with reactive capability."""
    un = m.market.units
    idx = [(k, t) for fam, k in m.QR if fam == "units" for t in m.T]
    m.constraint_unit_q_max = pe.Constraint(idx, rule=lambda _, k, t: m.resource_q["units", k, t]
                                            <= un[k].q_max_kvar * m.unit_on[k, t])
    m.constraint_unit_q_min = pe.Constraint(idx, rule=lambda _, k, t: m.resource_q["units", k, t]
                                            >= un[k].q_min_kvar * m.unit_on[k, t])


def _q_at(m, t: int) -> dict[int, list]:
    """{location column: [(share, q variable)]} of interval t."""
    mk, net = m.market, m.net
    col = {loc: j for j, loc in enumerate(net.intervals[t].locations)}
    out: dict[int, list] = {}
    for fam, k in m.QR:
        for loc, share in net.split(getattr(mk, fam)[k].location):
            out.setdefault(col[loc], []).append((share, m.resource_q[fam, k, t]))
    return out


def _term(coef_row: np.ndarray | None, at: dict[int, list]):
    if coef_row is None:
        return 0.0
    return sum(float(coef_row[j]) * sh * q for j, terms in at.items() if coef_row[j] != 0.0 for sh, q in terms)


def _add(con, extra) -> None:
    """Add `extra` to the body of a built row, keeping its orientation."""
    if isinstance(extra, (int, float)):
        return
    if con.equality:
        con.set_value(con.body + extra == con.upper)
    elif con.upper is not None:
        con.set_value(con.body + extra <= con.upper)
    else:
        con.set_value(con.body + extra >= con.lower)


def constraint_reactive_terms(m) -> None:
    """The reactive injections in the balance, line and voltage rows (module docstring)."""
    if not len(m.QR):
        return
    constraint_unit_q(m)
    for t in m.T:
        iv = m.net.intervals[t]
        at = _q_at(m, t)
        if iv.loss_factor_q is not None:
            _add(m.constraint_system_balance[t], -1.0 * _term(iv.loss_factor_q, at))
        lines = {x: i for i, x in enumerate(iv.line_ids)}
        for x in m.K:
            row = None if iv.ptdf_q is None else iv.ptdf_q[lines[x]]
            extra = _term(row, at)
            _add(m.constraint_line_flow_max[x, t], extra)
            _add(m.constraint_line_flow_min[x, t], extra)
        volts = {x: i for i, x in enumerate(iv.voltage_locations)}
        for x in m.V:
            row = None if iv.dv_dq is None else iv.dv_dq[volts[x]]
            extra = _term(row, at)
            _add(m.constraint_voltage_max[x, t], extra)
            _add(m.constraint_voltage_min[x, t], extra)


def schedule_q(m) -> dict[str, np.ndarray]:
    """{resource id: kvar per interval} of the resources with reactive capability."""
    mk = m.market
    return {getattr(mk, fam)[k].id: np.array([float(pe.value(m.resource_q[fam, k, t])) for t in m.T])
            for fam, k in m.QR}
