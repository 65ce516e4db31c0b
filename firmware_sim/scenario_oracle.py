"""Foresight bound: the best tracking any controller could reach, knowing the whole goal ahead.

A measured yardstick for the control law (docs/concepts.md, "Limits"): if even this oracle cannot
follow a goal, no law can; if it can, the law's error is a matter of information, not physics.

Model (fluid = the expected value of the pinned per-slice dynamics, one pooled movable tier):

* fixed demand F kW is always enabled (the black tier); movable demand N kW starts all enabled and
  flexible (pinned initial state: every slice EF);
* per round m the oracle chooses on_m, off_m >= 0 kW;  E_m = E_{m-1} + on_m - off_m,  E_{-1} = N;
* demand switched d rounds ago is still refractory with probability S(d) = 1 - Σ_{d' <= d} K(d'),
  K = `cloud.estimator.expiry_kernel` (T + U(0, V) timers), so
      off_m <= E_{m-1}     - Σ_{j<m} on_j  · S_er(m - j)     (enabled-flexible kW)
      on_m  <= N - E_{m-1} - Σ_{j<m} off_j · S_dr(m - j)     (disabled-flexible kW);
* minimise Σ_scored |F + E_m - g_m|  (a linear program, HiGHS).

Pooling the tiers drops tier priority, fairness and cycling (relaxations), and the oracle sees the
future goal, so its minimal mean |error| is a lower bound on the mean |error| — hence on the RMS
(RMS >= mean |e|) — of any law on the same fleet in expectation. The RMS of the L1-optimal
trajectory is also returned (an achievable RMS for the oracle, not a bound).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from cloud.estimator import RefractoryParams, expiry_kernel


class OracleError(RuntimeError):
    """The oracle LP did not solve to optimality (message carries the solver status)."""


@dataclass(frozen=True)
class ForesightBound:
    min_mean_abs_error_kw: float   # lower bound on any law's mean |error| (and RMS), scored rounds
    rms_error_kw: float            # RMS of the L1-optimal oracle trajectory, scored rounds
    enabled_kw: np.ndarray         # (M,) oracle enabled kW, F + E_m


def _survival(t_s: float, v_s: float, round_s: float, n: int) -> np.ndarray:
    s = 1.0 - np.cumsum(expiry_kernel(t_s, v_s, round_s))
    out = np.zeros(n + 1)
    out[: min(s.size, n + 1)] = np.clip(s[: n + 1], 0.0, 1.0)
    return out


def foresight_bound(goal_kw, scored, fixed_kw: float, movable_kw: float, round_s: float = 2.0,
                    refractory: RefractoryParams | None = None) -> ForesightBound:
    """Solve the oracle LP of the module docstring for goal g_m (kW) at rounds m = 0..M-1."""
    g = np.asarray(goal_kw, dtype=float).reshape(-1)
    w = np.asarray(scored, dtype=bool).reshape(-1)
    if g.size == 0 or w.size != g.size or not np.all(np.isfinite(g)):
        raise OracleError("goal_kw must be a finite non-empty series with one scored flag per round")
    r = refractory or RefractoryParams()
    m_n = g.size
    lag = int(np.ceil(max(r.t_ef_s + r.t_ev_s, r.t_df_s + r.t_dv_s) / round_s)) + 2
    s_er = _survival(r.t_ef_s, r.t_ev_s, round_s, lag)
    s_dr = _survival(r.t_df_s, r.t_dv_s, round_s, lag)
    # columns: on (M), off (M), E (M), e+ (M), e- (M)
    on, off, en, ep, em = (np.arange(m_n) + i * m_n for i in range(5))
    b_eq: list[float] = []
    b_ub: list[float] = []
    eq_rows: list[int] = []
    ub_rows: list[int] = []
    eq_c: list[int] = []
    ub_c: list[int] = []
    eq_v: list[float] = []
    ub_v: list[float] = []
    for m in range(m_n):
        past = np.arange(max(0, m - lag), m)
        d = m - past
        # E_m - E_{m-1} - on_m + off_m = 0   (E_{-1} = N)
        cs, vs = [en[m], on[m], off[m]], [1.0, -1.0, 1.0]
        if m > 0:
            cs, vs = cs + [en[m - 1]], vs + [-1.0]
        _row(eq_rows, eq_c, eq_v, cs, vs, b_eq, 0.0 if m > 0 else movable_kw)
        # fixed + E_m - g_m = e+ - e-
        _row(eq_rows, eq_c, eq_v, [en[m], ep[m], em[m]], [1.0, -1.0, 1.0], b_eq, g[m] - fixed_kw)
        # off_m + Σ on_j S_er - E_{m-1} <= 0 ;  on_m + Σ off_j S_dr + E_{m-1} <= N
        prev = ([en[m - 1]], [-1.0]) if m > 0 else ([], [])
        _row(ub_rows, ub_c, ub_v, [off[m], *on[past], *prev[0]], [1.0, *s_er[d], *prev[1]], b_ub,
             0.0 if m > 0 else movable_kw)
        _row(ub_rows, ub_c, ub_v, [on[m], *off[past], *prev[0]], [1.0, *s_dr[d], *(-x for x in prev[1])],
             b_ub, movable_kw if m > 0 else 0.0)
    n_col = 5 * m_n
    a_eq = sp.csr_matrix((eq_v, (eq_rows, eq_c)), shape=(len(b_eq), n_col))
    a_ub = sp.csr_matrix((ub_v, (ub_rows, ub_c)), shape=(len(b_ub), n_col))
    cost = np.zeros(n_col)
    cost[ep] = cost[em] = w.astype(float)
    bounds = [(0.0, None)] * (2 * m_n) + [(0.0, movable_kw)] * m_n + [(0.0, None)] * (2 * m_n)
    sol = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if sol.status != 0:
        raise OracleError(f"oracle LP not solved: {sol.message}")
    enabled = fixed_kw + sol.x[en]
    err = enabled[w] - g[w]
    n_scored = max(int(w.sum()), 1)
    return ForesightBound(float(sol.fun) / n_scored, float(np.sqrt(np.sum(err ** 2) / n_scored)), enabled)


def _row(rows: list, cols: list, vals: list, cs, vs, rhs_list: list, rhs: float) -> None:
    idx = len(rhs_list)
    rows.extend([idx] * len(cs))
    cols.extend(int(c) for c in cs)
    vals.extend(float(v) for v in vs)
    rhs_list.append(rhs)


def result_foresight_bound(res) -> ForesightBound:
    """`foresight_bound` for a finished constant-load `ScenarioResult` (same goal, scored rounds,
    black tier = fixed, other tiers = movable, refractory defaults)."""
    if res.config.load_model != "constant":
        raise OracleError("the foresight bound needs constant loads (load-model constant)")
    fixed = float(res.enabled_tier_kw[0, -1])
    movable = float(res.fleet_kw - fixed)
    return foresight_bound(res.goal_kw, res.scored, fixed, movable, res.config.round_s)
