"""The equilibrium check (issue 15 item 8 d): every participant, self-scheduling against the DLMPs of the
pricing run, can do no better than its cleared quantity.

For each participant a tiny LP over the horizon, alone, at its share-weighted DLMP π_t (k = Δt/1000):

    offer    max Σ_t Σ_s k(π_t − c_s)·q_st    0 ≤ q_st ≤ p_s,  Σ_s q_st ≤ cap_t,  daily E_min ≤ Σ q·Δt ≤ E_max
    bid      max Σ_t Σ_s k(c_s − π_t)·q_st    the same rows (consumption)
    unit     max Σ_t k(π_t − c)·p_t           p_min·on_t ≤ p_t ≤ p_max·on_t (on_t: the cleared commitment), E limits
    storage  max Σ_t k(π_t·(d_t − c_t) − c^d·d_t)   SoC rows, c_t ≤ P_c·mode_t, d_t ≤ P_d·(1 − mode_t) (modes as cleared)
    block    max k·r·p_kw·Σ_window (π_t − c)   MAR·a ≤ r ≤ a (a: the cleared acceptance)
    iso      max Σ_t k((λ_t − π^imp_t)·imp_t + (π^exp_t − λ_t)·exp_t)   at the energy price λ, within its limits

(solved with HiGHS through scipy). The cleared quantity's own profit — an offer's or bid's kW per
interval split over its steps in merit order, the cheapest (dearest) first, as the clearing does —
must reach the self-scheduled optimum to `tol`: then the cleared quantity is a best response to the
prices. Fixed integers (commitments, block acceptances, storage modes) are held: the prices support the
dispatch, not the commitment (uplift covers that). Bilateral schedules are fixed: nothing to choose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from market.lem.schema import days

PROFIT_TOL_USD = 1e-6


class EquilibriumError(RuntimeError):
    """A participant's self-scheduling LP did not solve (it should always be feasible: the cleared
    quantity is a solution)."""


@dataclass(frozen=True)
class SelfSchedule:
    party: str
    kind: str
    cleared_profit_usd: float
    best_profit_usd: float
    self_kw: np.ndarray          # the self-scheduled kW per interval (generation positive; one optimum)
    cleared_kw: np.ndarray

    @property
    def gap_usd(self) -> float:
        return self.best_profit_usd - self.cleared_profit_usd


def _lp(c_max, bounds, a_ub=None, b_ub=None, a_eq=None, b_eq=None, who=""):
    res = linprog(-np.asarray(c_max, float), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status == 3:   # unbounded: an unlimited party (the ISO) would trade without end at these prices
        return np.zeros(len(bounds)), float("inf")
    if res.status != 0:
        raise EquilibriumError(f"{who}: self-scheduling LP ended with {res.message}")
    return res.x, -res.fun


def _energy_rows(market, r, n_steps: int, sign: float = 1.0):
    """Daily energy rows over (steps × intervals) columns t-major: Σ q·Δt within [lo, hi]."""
    a, b = [], []
    T = market.intervals
    for ts in days(market):
        row = np.zeros(n_steps * T)
        for t in ts:
            row[t * n_steps:(t + 1) * n_steps] = market.interval_h
        if r.daily_energy_max_kwh is not None:
            a.append(row), b.append(r.daily_energy_max_kwh)
        if r.daily_energy_min_kwh is not None:
            a.append(-row), b.append(-r.daily_energy_min_kwh)
    return a, b


def _merit_profit(steps, q_kw: np.ndarray, price: np.ndarray, k: float, bid: bool) -> float:
    """Profit of quantity q_t split over the steps in merit order (offers: cheapest first; bids: dearest)."""
    order = sorted(steps, key=lambda s: -s.price_usd_per_mwh if bid else s.price_usd_per_mwh)
    total = 0.0
    for t, q in enumerate(q_kw):
        left = q
        for s in order:
            take = min(left, s.p_kw)
            total += k * take * ((s.price_usd_per_mwh - price[t]) if bid else (price[t] - s.price_usd_per_mwh))
            left -= take
        if left > 1e-6:
            raise EquilibriumError(f"cleared {q} kW is more than the steps hold")
    return total


def _stepped(market, r, price, k, bid: bool, cleared: np.ndarray) -> SelfSchedule:
    T, S = market.intervals, len(r.steps)
    cost = np.array([s.price_usd_per_mwh for s in r.steps])
    c = np.concatenate([k * ((cost - price[t]) if bid else (price[t] - cost)) for t in range(T)])
    bounds = [(0.0, s.p_kw) for _ in range(T) for s in r.steps]
    a, b = _energy_rows(market, r, S)
    cap = getattr(r, "p_max_kw", None)
    if cap is not None:
        for t in range(T):
            row = np.zeros(S * T)
            row[t * S:(t + 1) * S] = 1.0
            a.append(row), b.append(cap[t])
    x, best = _lp(c, bounds, np.array(a) if a else None, np.array(b) if b else None, who=r.id)
    q = x.reshape(T, S).sum(axis=1)
    q_cleared = -cleared if bid else cleared
    return SelfSchedule(r.id, "bid" if bid else "offer", _merit_profit(r.steps, q_cleared, price, k, bid), best,
                        -q if bid else q, cleared)


def _unit(market, u, i, price, k, cleared, integers) -> SelfSchedule:
    T = market.intervals
    on = np.array([integers[f"unit_on[{i},{t}]"] for t in range(T)])
    a, b = _energy_rows(market, u, 1)
    x, best = _lp(k * (price - u.price_usd_per_mwh), [(u.p_min_kw * o, u.p_max_kw * o) for o in on],
                  np.array(a) if a else None, np.array(b) if b else None, who=u.id)
    return SelfSchedule(u.id, "unit", k * float((price - u.price_usd_per_mwh) @ cleared), best, x, cleared)


def _storage(market, st, i, price, k, cleared, integers) -> SelfSchedule:
    T, dt = market.intervals, market.interval_h
    mode = np.array([integers[f"storage_charging[{i},{t}]"] for t in range(T)])
    # columns: charge 0..T-1, discharge T..2T-1, soc 2T..3T-1
    c = np.concatenate([-k * price, k * (price - st.discharge_cost_usd_per_mwh), np.zeros(T)])
    bounds = ([(0.0, st.p_charge_max_kw * m) for m in mode] + [(0.0, st.p_discharge_max_kw * (1 - m)) for m in mode]
              + [(st.soc_min_kwh, st.e_max_kwh)] * T)
    a_eq, b_eq = np.zeros((T, 3 * T)), np.zeros(T)
    for t in range(T):
        a_eq[t, 2 * T + t] = 1.0
        a_eq[t, t] = -st.eta_charge * dt
        a_eq[t, T + t] = dt / st.eta_discharge
        if t:
            a_eq[t, 2 * T + t - 1] = -1.0
        else:
            b_eq[t] = st.soc_initial_kwh
    final = st.soc_initial_kwh if st.soc_final_min_kwh is None else st.soc_final_min_kwh
    a_ub = np.zeros((1, 3 * T))
    a_ub[0, 3 * T - 1] = -1.0
    x, best = _lp(c, bounds, a_ub, [-final], a_eq, b_eq, who=st.id)
    dis = np.maximum(cleared, 0.0)
    mine = k * float(price @ cleared) - k * st.discharge_cost_usd_per_mwh * float(dis.sum())
    return SelfSchedule(st.id, "storage", mine, best, x[T:2 * T] - x[:T], cleared)


def _block(market, b, price, k, cleared) -> SelfSchedule:
    win = slice(b.first_interval, b.first_interval + b.n_intervals)
    gain = k * b.p_kw * float(np.sum(price[win] - b.price_usd_per_mwh))
    a = 1.0 if cleared[win].max() > 1e-9 else 0.0
    r = a if gain > 0 else b.min_acceptance_ratio * a
    best_kw = np.zeros(market.intervals)
    best_kw[win] = r * b.p_kw
    return SelfSchedule(b.id, "block", k * float((price - b.price_usd_per_mwh) @ cleared), r * gain, best_kw, cleared)


def _iso(market, energy, k, cleared) -> SelfSchedule:
    iso = market.iso
    imp_p = np.asarray(iso.import_price_usd_per_mwh, float)
    exp_p = np.asarray(iso.export_price_usd_per_mwh or iso.import_price_usd_per_mwh, float)
    T = market.intervals
    bounds = [(0.0, iso.import_max_kw)] * T + [(0.0, iso.export_max_kw)] * T
    x, best = _lp(np.concatenate([k * (energy - imp_p), k * (exp_p - energy)]), bounds, who="iso")
    imp, exp = np.maximum(cleared, 0.0), np.maximum(-cleared, 0.0)
    mine = k * float((energy - imp_p) @ imp + (exp_p - energy) @ exp)
    return SelfSchedule("iso", "iso", mine, best, x[:T] - x[T:], cleared)


def self_schedules(market, net, clearing) -> list[SelfSchedule]:
    """Every participant's self-scheduled optimum at the clearing's DLMPs beside its cleared profit."""
    k = market.interval_h / 1000.0
    prices, sched, ints = clearing.prices, clearing.schedule_kw, clearing.integers

    def price(loc):
        return sum(share * prices.at(x) for x, share in net.split(loc))
    out = [_stepped(market, o, price(o.location), k, False, sched[o.id]) for o in market.offers]
    out += [_stepped(market, b, price(b.location), k, True, sched[b.id]) for b in market.bids]
    out += [_unit(market, u, i, price(u.location), k, sched[u.id], ints) for i, u in enumerate(market.units)]
    out += [_storage(market, s, i, price(s.location), k, sched[s.id], ints) for i, s in enumerate(market.storage)]
    out += [_block(market, b, price(b.location), k, sched[b.id]) for b in market.blocks]
    out.append(_iso(market, prices.energy[0], k, np.asarray(sched["iso"], float)))
    return out


def equilibrium_gaps(market, net, clearing, tol: float = PROFIT_TOL_USD) -> list[SelfSchedule]:
    """The participants that could do better than their cleared quantity by more than `tol` USD
    (scaled by their profit): empty when the prices support the dispatch."""
    return [s for s in self_schedules(market, net, clearing)
            if s.gap_usd > tol * max(1.0, abs(s.best_profit_usd))]
