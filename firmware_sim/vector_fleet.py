"""Vectorized fleet: numpy arrays of tier-slices stepping the pinned EF/ER/DF/DR machine.

Same semantics as `edge_agent` (docs/concepts.md), for millions of slices:

* arrays of shape (n_devices, k): `state` (int8: EF=0, ER=1, DF=2, DR=3) and `timer_end_s`
  (float32, +inf while flexible); tier k-1 is black;
* one round at time t: (1) every refractory slice whose timer end <= t becomes flexible
  (ER→EF, DR→DF: state - 1); (2) one uniform draw per flexible slice: EF→DR with p_off[i],
  DF→ER with p_on[i] (state → 3 - state); (3) a switch starts a timer of T_EF + U(0, T_EV) into
  ER or T_DF + U(0, T_DV) into DR;
* safety: black p_off forced to 0; refractory slices never switch; fail-safe (p_off = 0, p_on = 1)
  when no valid vector arrived for `fail_safe_s`;
* customer override: all the device's slices become ER with the timer at the override's end,
  so they are reported as ER until then and become EF afterwards;
* a slice's kW = device demand kW × tier share (demand may change every round: `physics`).

The odd states are exactly the refractory ones and `3 - s` maps EF↔DR and DF↔ER, which keeps each
step to a handful of whole-array operations.
"""
from __future__ import annotations

import numpy as np

from cloud.estimator import RefractoryParams

EF, ER, DF, DR = 0, 1, 2, 3
INF = np.float32(np.inf)


class FleetError(ValueError):
    """Invalid fleet set-up or control input (message names the field)."""


class VectorFleet:
    def __init__(self, device_kw, tier_shares, rng: np.random.Generator,
                 refractory: RefractoryParams | None = None, devices_per_gateway: int = 10,
                 fail_safe_s: float = 60.0, track_on_time: bool = True):
        kw = np.asarray(device_kw, dtype=float)
        shares = np.asarray(tier_shares, dtype=float)
        if kw.ndim != 1 or kw.size == 0 or not np.all(np.isfinite(kw)) or np.any(kw < 0):
            raise FleetError("device_kw must be a non-empty 1-D array of finite kW >= 0")
        if shares.ndim != 1 or shares.size < 1 or np.any(shares < 0) or not np.isclose(shares.sum(), 1.0):
            raise FleetError(f"tier_shares must be >= 0 and sum to 1, got {shares.tolist()}")
        if devices_per_gateway < 1:
            raise FleetError("devices_per_gateway must be >= 1")
        self.n, self.k = kw.size, shares.size
        self.rng = rng
        self.rp = refractory or RefractoryParams()
        self.rated_kw = kw.copy()
        self.demand_kw = kw.copy()                  # current demand, may be changed by physics
        self.shares = shares
        self._no_slice = shares <= 0.0
        self.state = np.zeros((self.n, self.k), dtype=np.int8)
        self.timer_end_s = np.full((self.n, self.k), INF, dtype=np.float32)
        self.gateway_of = np.arange(self.n) // devices_per_gateway
        self.n_gateways = int(self.gateway_of[-1]) + 1
        base = self.gateway_of[:, None] * (4 * self.k) + np.arange(self.k)[None, :]
        self._agg_base = base.astype(np.int64)
        self._prob = np.zeros(4 * self.k, dtype=np.float32)   # flat table [state * k + tier]
        self._tier_col = np.broadcast_to(np.arange(self.k, dtype=np.int64), (self.n, self.k))
        self.fail_safe_s = float(fail_safe_s)
        self._vector: tuple[np.ndarray, np.ndarray] | None = None
        self._vector_t: float | None = None
        self.track_on_time = track_on_time
        self.enabled_rounds = np.zeros((self.n, self.k), dtype=np.int32)
        self.rounds = 0
        self.switches = np.zeros(self.n, dtype=np.int64)
        self.override_until_s = np.full(self.n, -np.inf)

    # ---- control vector ----------------------------------------------------------------
    def _vector_in_force(self, t_s: float, p_on, p_off) -> tuple[np.ndarray, np.ndarray]:
        """Store a new valid vector; return the one in force: fail-safe (p_on = 1, p_off = 0)
        when none arrived yet or the last one is `fail_safe_s` old (as edge_agent.GatewayCore)."""
        if p_on is not None and p_off is not None:
            on = np.asarray(p_on, dtype=float)
            off = np.asarray(p_off, dtype=float)
            if on.shape != (self.k,) or off.shape != (self.k,):
                raise FleetError(f"p_on/p_off must have shape ({self.k},)")
            if np.all(np.isfinite(on)) and np.all(np.isfinite(off)):
                self._vector = (np.clip(on, 0.0, 1.0), np.clip(off, 0.0, 1.0))
                self._vector_t = t_s
        if self._vector is None or self._vector_t is None or t_s - self._vector_t >= self.fail_safe_s:
            return np.ones(self.k), np.zeros(self.k)
        return self._vector

    # ---- one round ------------------------------------------------------------------------
    def step(self, t_s: float, p_on=None, p_off=None) -> int:
        """Advance one round at time `t_s` (s) with the vector (None, None = nothing new arrived).

        Returns the number of slices that switched."""
        st, te = self.state, self.timer_end_s
        t32 = np.float32(t_s)
        expired = te <= t32                                  # only refractory slices have finite timers
        np.subtract(st, 1, out=st, where=expired)
        te[expired] = INF
        on, off = self._vector_in_force(t_s, p_on, p_off)
        prob = self._prob
        prob[EF * self.k:(EF + 1) * self.k] = off
        prob[EF * self.k + self.k - 1] = 0.0                  # black never disabled
        prob[DF * self.k:(DF + 1) * self.k] = on
        prob[EF * self.k:(EF + 1) * self.k][self._no_slice] = 0.0   # a zero-share tier has no slice
        prob[DF * self.k:(DF + 1) * self.k][self._no_slice] = 0.0
        key = st.astype(np.int64) * self.k + self._tier_col
        u = self.rng.random((self.n, self.k), dtype=np.float32)
        switched = np.flatnonzero(u < prob[key])
        n_sw = switched.size
        if n_sw:
            flat_st, flat_te = st.reshape(-1), te.reshape(-1)
            new = 3 - flat_st[switched]
            flat_st[switched] = new
            u2 = self.rng.random(n_sw)
            dur = np.where(new == ER, self.rp.t_ef_s + u2 * self.rp.t_ev_s,
                           self.rp.t_df_s + u2 * self.rp.t_dv_s)
            flat_te[switched] = (t_s + dur).astype(np.float32)
            self.switches += np.bincount(switched // self.k, minlength=self.n)
        if self.track_on_time:
            self.enabled_rounds += st < DF
        self.rounds += 1
        return int(n_sw)

    # ---- disturbances ------------------------------------------------------------------------
    def start_override(self, devices, until_s: float | np.ndarray) -> None:
        """Force devices on until `until_s`: all their slices ER with the timer at the end."""
        idx = np.asarray(devices, dtype=np.int64)
        self.state[idx, :] = ER
        until = np.broadcast_to(np.asarray(until_s, dtype=float), idx.shape)
        self.timer_end_s[idx, :] = until.astype(np.float32)[:, None]
        self.override_until_s[idx] = until

    # ---- aggregation -------------------------------------------------------------------------
    def slice_kw(self) -> np.ndarray:
        return self.demand_kw[:, None] * self.shares[None, :]

    def gateway_reports(self) -> np.ndarray:
        """(n_gateways, k, 4) kW per gateway, tier and state (the per-round state report)."""
        key = self._agg_base + self.state.astype(np.int64) * self.k
        sums = np.bincount(key.reshape(-1), weights=self.slice_kw().reshape(-1),
                           minlength=self.n_gateways * 4 * self.k)
        return sums.reshape(self.n_gateways, 4, self.k).transpose(0, 2, 1)

    def aggregate(self) -> np.ndarray:
        """(k, 4) kW of the whole fleet."""
        key = self.state.astype(np.int64) * self.k + self._tier_col
        sums = np.bincount(key.reshape(-1), weights=self.slice_kw().reshape(-1), minlength=4 * self.k)
        return sums.reshape(4, self.k).T

    def counts(self) -> np.ndarray:
        """(k, 4) number of slices per tier and state."""
        key = self.state.astype(np.int64) * self.k + self._tier_col
        out = np.bincount(key.reshape(-1), minlength=4 * self.k).reshape(4, self.k).T.copy()
        out[self._no_slice] = 0                     # a zero-share tier has no slice
        return out

    def enabled_fraction(self) -> np.ndarray:
        """(n,) share of each device's demand that is enabled (Σ shares of enabled slices)."""
        return (self.state < DF) @ self.shares

    def on_time_fraction(self) -> np.ndarray:
        """(n, k) fraction of rounds each slice spent enabled (EF or ER)."""
        return self.enabled_rounds / max(self.rounds, 1)
