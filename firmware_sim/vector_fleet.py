"""Vectorized fleet: numpy arrays of tier-slices stepping the pinned EF/ER/DF/DR machine.

Same semantics as `edge_agent` (docs/concepts.md), for millions of slices:

* flat arrays over slices j = device · k + tier: `state` (int8: EF=0, ER=1, DF=2, DR=3) and
  `timer_end` (s); `state_2d` / `timer_end_s` are (n_devices, k) views; tier k-1 is black;
* one round at time t: (1) every refractory slice whose timer end <= t becomes flexible
  (ER→EF, DR→DF: state - 1); (2) each flexible slice switches independently: EF→DR with p_off[i],
  DF→ER with p_on[i] (state → 3 - state); (3) a switch starts a timer of T_EF + U(0, T_EV) into
  ER or T_DF + U(0, T_DV) into DR;
* safety: black p_off forced to 0; refractory slices never switch; fail-safe (p_off = 0, p_on = 1)
  when no valid vector arrived yet or for `fail_safe_s` (as `edge_agent.GatewayCore`);
* customer override: all the device's slices become ER with the timer at the override's end,
  reported as ER until then and EF afterwards;
* a slice's kW = device demand kW × tier share (demand may change every round: `physics`);
* control groups (e.g. one per feeder bus·phase): `groups` = G splits the gateways into G
  contiguous blocks; each group has its own vector (p_on / p_off of shape (G, k); a row of NaN =
  nothing new for that group) and its own fail-safe timer; `group_aggregate()` is (G, k, 4).

Cost per round is proportional to the slices that change, not to the fleet:
* step 2 draws, per tier and direction, a Bernoulli(p) process over the tier's slices through
  geometric gaps (G = ⌊ln U / ln(1 - p)⌋ + 1) and keeps the positions whose slice is in the state
  that switches; every flexible slice thus switches independently with probability p, exactly as
  one uniform draw per slice would (a dense draw is used when p >= 0.25);
* step 1 uses a timing wheel: a slice entering refractory is filed under the first round time
  >= its timer end; the `timer_end` array stays authoritative, so stale entries (a timer replaced
  by an override) are skipped;
* the fleet (k, 4) kW and counts are kept up to date from the transitions (full recount after a
  demand change); per-device switch counts and enabled time likewise.
"""
from __future__ import annotations

import math

import numpy as np

from cloud.estimator import RefractoryParams
from edge_agent.states import DF, DR, EF, ER

DENSE_P = 0.25
SWITCH = (DR, ER, ER, DR)       # to_state[old] for switching (only EF and DF switch)
TIMER_END = (EF, EF, DF, DF)    # to_state[old] for an ended timer (only ER and DR end)


class FleetError(ValueError):
    """Invalid fleet set-up or control input (message names the field)."""


class VectorFleet:
    def __init__(self, device_kw, tier_shares, rng: np.random.Generator,
                 refractory: RefractoryParams | None = None, devices_per_gateway: int = 10,
                 fail_safe_s: float = 60.0, round_s: float = 2.0, track_on_time: bool = True,
                 groups: int = 1):
        """`track_on_time`: keep per-slice switch counts and enabled time (metrics); off in the
        speed bench, whose naive baseline keeps neither. `groups`: control groups (module doc)."""
        kw = np.asarray(device_kw, dtype=float)
        shares = np.asarray(tier_shares, dtype=float)
        if kw.ndim != 1 or kw.size == 0 or not np.all(np.isfinite(kw)) or np.any(kw < 0):
            raise FleetError("device_kw must be a non-empty 1-D array of finite kW >= 0")
        if shares.ndim != 1 or shares.size < 1 or np.any(shares < 0) or not np.isclose(shares.sum(), 1.0):
            raise FleetError(f"tier_shares must be >= 0 and sum to 1, got {shares.tolist()}")
        if devices_per_gateway < 1:
            raise FleetError("devices_per_gateway must be >= 1")
        if not round_s > 0:
            raise FleetError("round_s must be > 0")
        self.n, self.k = kw.size, shares.size
        self.rng = rng
        self.rp = refractory or RefractoryParams()
        self.rated_kw = kw.copy()
        self.shares = shares
        self._no_slice = shares <= 0.0
        self.round_s = float(round_s)
        self.state = np.zeros(self.n * self.k, dtype=np.int8)
        self._tier_of = np.tile(np.arange(self.k, dtype=np.int8), self.n)
        self.timer_end = np.full(self.n * self.k, np.inf)
        self.gateway_of = np.arange(self.n) // devices_per_gateway
        self.n_gateways = int(self.gateway_of[-1]) + 1
        if not isinstance(groups, (int, np.integer)) or not 1 <= groups <= self.n_gateways:
            raise FleetError(f"groups must be an integer in [1, {self.n_gateways}] (one gateway "
                             f"at least per group), got {groups!r}")
        self.n_groups = int(groups)
        self.group_of_gateway = np.arange(self.n_gateways) * self.n_groups // self.n_gateways
        self.group_of = self.group_of_gateway[self.gateway_of]
        self._group_of_slice = np.repeat(self.group_of, self.k) if self.n_groups > 1 else None
        self.fail_safe_s = float(fail_safe_s)
        self._vector = (np.ones((self.n_groups, self.k)), np.zeros((self.n_groups, self.k)))
        self._vector_t = np.full(self.n_groups, -np.inf)    # -inf: none arrived yet (fail-safe)
        self._wheel: dict[int, list[np.ndarray]] = {}
        self._may_repeat: set[int] = set()
        self._next_key: int | None = None
        self.track_on_time = track_on_time
        self._slice_switches = np.zeros(self.n * self.k, dtype=np.int64)
        self.override_until_s = np.full(self.n, -np.inf)
        self.rounds = 0
        self._t_last: float | None = None
        self._t_reset: float | None = None
        self._enabled_acc = np.zeros(self.n * self.k)
        self._enabled_since = np.zeros(self.n * self.k)
        self._demand_kw = kw.copy()
        self._recount()

    # ---- views and demand ----------------------------------------------------------------
    @property
    def state_2d(self) -> np.ndarray:
        return self.state.reshape(self.n, self.k)

    @property
    def timer_end_s(self) -> np.ndarray:
        return self.timer_end.reshape(self.n, self.k)

    @property
    def demand_kw(self) -> np.ndarray:
        return self._demand_kw

    @demand_kw.setter
    def demand_kw(self, value) -> None:
        self._demand_kw = np.asarray(value, dtype=float).reshape(self.n)
        self._recount()

    def slice_kw(self) -> np.ndarray:
        """(n, k) kW per slice (0 for a zero-share tier)."""
        return self._demand_kw[:, None] * self.shares[None, :]

    def _recount(self) -> None:
        """Per group (G, k, 4) kW and counts from scratch (after a demand change)."""
        self._slice_kw_flat = self.slice_kw().reshape(-1)
        g, k = self.n_groups, self.k
        key = self.state.astype(np.int64) * k + self._tier_of
        if self._group_of_slice is not None:
            key = key + self._group_of_slice.astype(np.int64) * (4 * k)
        shape = (g, 4, k)
        self._agg = np.bincount(key, weights=self._slice_kw_flat, minlength=4 * k * g).reshape(shape).transpose(0, 2, 1).copy()
        self._cnt = np.bincount(key, minlength=4 * k * g).reshape(shape).transpose(0, 2, 1).copy()

    def _move(self, idx: np.ndarray, old: np.ndarray, to_state: tuple[int, int, int, int]) -> None:
        """Move slices `idx` (unique) from `old` to `to_state[old]`, keeping kW/counts in step."""
        g, k = self.n_groups, self.k
        self.state[idx] = np.asarray(to_state, dtype=np.int8)[old]
        key = old.astype(np.int32) * k + self._tier_of[idx]
        if self._group_of_slice is not None:
            key = key + self._group_of_slice[idx].astype(np.int32) * (4 * k)
        kw = np.bincount(key, weights=self._slice_kw_flat[idx], minlength=4 * k * g).reshape(g, 4, k)
        cnt = np.bincount(key, minlength=4 * k * g).reshape(g, 4, k)
        for s_old, s_new in enumerate(to_state):
            if s_old != s_new:
                self._agg[:, :, s_old] -= kw[:, s_old]
                self._agg[:, :, s_new] += kw[:, s_old]
                self._cnt[:, :, s_old] -= cnt[:, s_old]
                self._cnt[:, :, s_new] += cnt[:, s_old]

    # ---- control vector ----------------------------------------------------------------
    def _vector_in_force(self, t_s: float, p_on, p_off) -> tuple[np.ndarray, np.ndarray]:
        """Store each group's new valid vector; return the (G, k) vectors in force, fail-safe
        (p_on = 1, p_off = 0) for a group that has none yet or whose last one is `fail_safe_s`
        old (as edge_agent.GatewayCore). A (k,) vector is for every group."""
        g, k = self.n_groups, self.k
        if p_on is not None and p_off is not None:
            on = np.asarray(p_on, dtype=float)
            off = np.asarray(p_off, dtype=float)
            if on.shape == (k,) and off.shape == (k,):
                on, off = np.broadcast_to(on, (g, k)), np.broadcast_to(off, (g, k))
            if on.shape != (g, k) or off.shape != (g, k):
                raise FleetError(f"p_on/p_off must have shape ({k},) or ({g}, {k})")
            fresh = np.all(np.isfinite(on), axis=1) & np.all(np.isfinite(off), axis=1)
            if fresh.any():
                self._vector[0][fresh] = np.clip(on[fresh], 0.0, 1.0)
                self._vector[1][fresh] = np.clip(off[fresh], 0.0, 1.0)
                self._vector_t[fresh] = t_s
        stale = t_s - self._vector_t >= self.fail_safe_s
        if not stale.any():
            return self._vector
        on, off = self._vector[0].copy(), self._vector[1].copy()
        on[stale], off[stale] = 1.0, 0.0
        return on, off

    # ---- timing wheel ----------------------------------------------------------------------
    def _key(self, ends: np.ndarray) -> np.ndarray:
        """Wheel bucket: the first round time (multiple of round_s) >= the timer end."""
        return np.ceil(ends / self.round_s - 1e-9).astype(np.int64)

    def _file(self, idx: np.ndarray, ends: np.ndarray, replaced: bool = False) -> None:
        """File slices under their timer's bucket; `replaced`: they may already be filed."""
        if idx.size == 0:
            return
        keys = self._key(ends)
        lo = int(keys.min())
        rel = keys - lo
        if int(rel.max()) < 32767:               # small range: stable radix sort on int16
            rel = rel.astype(np.int16)
        order = np.argsort(rel, kind="stable")
        keys, idx = keys[order], idx[order]
        cut = (np.flatnonzero(np.diff(keys)) + 1).tolist()
        starts, stops = [0] + cut, cut + [idx.size]
        for a, b in zip(starts, stops):
            key = int(keys[a])
            self._wheel.setdefault(key, []).append(idx[a:b])
            if replaced:
                self._may_repeat.add(int(key))
            if self._next_key is None or key < self._next_key:
                self._next_key = int(key)

    def _expire(self, t: float) -> None:
        if self._next_key is None:
            return
        x = t / self.round_s
        due = math.floor(x + 1e-9)
        last = due if abs(x - round(x)) < 1e-9 else due + 1     # off-grid t: peek one bucket on
        parts, repeat = [], False
        for key in range(self._next_key, last + 1):
            entries = self._wheel.pop(key, None)
            if entries:
                parts.extend(entries)
                repeat = repeat or key in self._may_repeat
                self._may_repeat.discard(key)
        self._next_key = min(self._wheel) if self._wheel else None
        if not parts:
            return
        idx = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if repeat:
            idx = np.unique(idx)
        st = self.state[idx]
        end = self.timer_end[idx]
        live = ((st & 1) == 1) & (end <= t)
        # refractory but not yet due: only entries of the peeked bucket are re-filed; others are
        # stale (the timer was replaced and is filed under its own bucket)
        if last > due:
            later = (st % 2 == 1) & (end > t) & (self._key(end) <= last)
            if later.any():
                self._file(idx[later], end[later], replaced=True)
        idx, st = idx[live], st[live]
        if idx.size:
            self.timer_end[idx] = np.inf
            self._move(idx, st, TIMER_END)

    # ---- one round ------------------------------------------------------------------------
    def _bernoulli(self, p: float) -> np.ndarray:
        """Positions u in [0, n) of a Bernoulli(p) process (each independently with prob p)."""
        n = self.n
        if p <= 0.0:
            return np.zeros(0, dtype=np.int64)
        if p >= DENSE_P:
            return np.flatnonzero(self.rng.random(n) < p)
        log_q = math.log1p(-p)
        out, start = [], -1
        while True:
            m = int(n * p + 6.0 * math.sqrt(n * p) + 16)
            # float32 uniforms: 2^-24 resolution, the same as the edge agent's 24-bit draws
            with np.errstate(divide="ignore"):      # u = 0 gives an infinite gap: clipped
                if n < 2 ** 24:
                    g = np.log(self.rng.random(m, dtype=np.float32)) * np.float32(1.0 / log_q)
                else:                               # float32 gaps would lose integer precision
                    g = np.log(self.rng.random(m)) / log_q
                gaps = np.minimum(g, n + 1.0).astype(np.int64) + 1   # g >= 0: truncation = floor
            pos = start + np.cumsum(gaps)
            out.append(pos[pos < n])
            if pos[-1] >= n:
                return np.concatenate(out)
            start = int(pos[-1])

    def step(self, t_s: float, p_on=None, p_off=None) -> int:
        """Advance one round at time `t_s` (s) with the vector (None, None = nothing new arrived).

        Returns the number of slices that switched."""
        t = float(t_s)
        if self._t_reset is None:
            self.reset_counters(t)
        self._expire(t)
        on, off = self._vector_in_force(t, p_on, p_off)
        k = self.k
        cnt = self._cnt.sum(axis=0)
        chosen = []
        for i in range(k):
            if self._no_slice[i]:
                continue
            p_ef = np.zeros(self.n_groups) if (i == k - 1 or cnt[i, EF] == 0) else off[:, i]
            p_df = np.zeros(self.n_groups) if cnt[i, DF] == 0 else on[:, i]
            p_max = float(max(p_ef.max(), p_df.max()))
            if p_max <= 0.0:
                continue
            # one Bernoulli(p_max) process over the tier, thinned to p_off on EF, p_on on DF
            # (of the slice's group)
            cand = i + k * self._bernoulli(p_max)
            st = self.state[cand]
            if np.all(p_ef == p_max) and np.all(p_df == p_max):
                keep = (st & 1) == 0                         # every flexible candidate
            else:
                grp = self._group_of_slice[cand] if self._group_of_slice is not None else 0
                p_cand = np.where(st == EF, p_ef[grp], np.where(st == DF, p_df[grp], 0.0))
                keep = self.rng.random(cand.size) * p_max < p_cand
            chosen.append(cand[keep])
        n_sw = 0
        if chosen:
            idx = np.concatenate(chosen)
            n_sw = int(idx.size)
        if n_sw:
            old = self.state[idx]
            u = self.rng.random(n_sw)
            rp = self.rp
            end = np.where(old == DF, (t + rp.t_ef_s) + u * rp.t_ev_s, (t + rp.t_df_s) + u * rp.t_dv_s)
            self.timer_end[idx] = end
            self._move(idx, old, SWITCH)
            self._file(idx, end)
            if self.track_on_time:
                self._slice_switches[idx] += 1            # idx unique: one switch per slice
                off_idx = idx[old == EF]
                self._enabled_acc[off_idx] += t - self._enabled_since[off_idx]
                self._enabled_since[idx[old == DF]] = t
        self.rounds += 1
        self._t_last = t
        return n_sw

    # ---- counters -----------------------------------------------------------------------------
    def reset_counters(self, t_s: float) -> None:
        """Restart switch counts and on-time accounting at time `t_s` (e.g. end of a warm-up)."""
        self._slice_switches[:] = 0
        self.rounds = 0
        self._t_reset = float(t_s)
        self._enabled_acc[:] = 0.0
        self._enabled_since[:] = float(t_s)

    @property
    def switches(self) -> np.ndarray:
        """(n,) slice switches per device since the last reset."""
        return self._slice_switches.reshape(self.n, self.k).sum(axis=1)

    def on_time_fraction(self) -> np.ndarray:
        """(n, k) fraction of the time since the reset each slice spent enabled (EF or ER);
        the state after a round counts until the next round."""
        if self._t_reset is None or self._t_last is None:
            return np.ones((self.n, self.k))
        t_end = self._t_last + self.round_s
        enabled = self.state < DF
        acc = self._enabled_acc + np.where(enabled, t_end - np.maximum(self._enabled_since, self._t_reset), 0.0)
        return (acc / (t_end - self._t_reset)).reshape(self.n, self.k)

    # ---- disturbances ------------------------------------------------------------------------
    def start_override(self, devices, until_s, t_s: float | None = None) -> None:
        """Force devices on from `t_s` (default: the next round) until `until_s`: all their
        slices ER with the timer at the end."""
        dev_in = np.asarray(devices, dtype=np.int64).reshape(-1)
        until_in = np.broadcast_to(np.asarray(until_s, dtype=float), dev_in.shape)
        dev, first = np.unique(dev_in, return_index=True)
        if dev.size == 0:
            return
        until = until_in[first]
        idx = (dev[:, None] * self.k + np.arange(self.k)[None, :]).reshape(-1)
        ends = np.repeat(until, self.k)
        keep = ~np.tile(self._no_slice, dev.size)
        idx, ends = idx[keep], ends[keep]
        old = self.state[idx]
        if self.track_on_time:
            t_on = t_s if t_s is not None else (self._t_last + self.round_s if self._t_last is not None else 0.0)
            self._enabled_since[idx[old >= DF]] = t_on
        self._move(idx, old, (ER, ER, ER, ER))
        self.timer_end[idx] = ends
        self._file(idx, ends, replaced=True)
        self.override_until_s[dev] = until

    # ---- aggregation -------------------------------------------------------------------------
    def aggregate(self) -> np.ndarray:
        """(k, 4) kW of the whole fleet (kept up to date from the transitions)."""
        return np.maximum(self._agg.sum(axis=0), 0.0)

    def group_aggregate(self) -> np.ndarray:
        """(G, k, 4) kW per control group."""
        return np.maximum(self._agg, 0.0)

    def counts(self) -> np.ndarray:
        """(k, 4) number of slices per tier and state (a zero-share tier has none)."""
        out = self._cnt.sum(axis=0)
        out[self._no_slice] = 0
        return out

    def gateway_reports(self) -> np.ndarray:
        """(n_gateways, k, 4) kW per gateway, tier and state (the per-round state report)."""
        k = self.k
        key = ((self.gateway_of[:, None] * (4 * k) + np.arange(k)[None, :]).reshape(-1)
               + self.state.astype(np.int64) * k)
        sums = np.bincount(key, weights=self.slice_kw().reshape(-1), minlength=self.n_gateways * 4 * k)
        return sums.reshape(self.n_gateways, 4, k).transpose(0, 2, 1)

    def enabled_fraction(self) -> np.ndarray:
        """(n,) share of each device's demand that is enabled (Σ shares of enabled slices)."""
        return (self.state_2d < DF) @ self.shares
