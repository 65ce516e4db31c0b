"""One gateway's devices stepped with numpy: the `--device-model vector` of the simulated fleet.

`VectorGatewayCore` has the interface `edge_agent.runtime.GatewayAgent` uses of
`edge_agent.gateway.GatewayCore` (`params`, `k`, `devices`, `apply_control`, `step`,
`aggregate`), so the agent around it is the real one — MQTT session, Last Will, codec, signature
and replay checks, fail-safe decision, store-and-forward — while the tier slices of its devices
move as arrays, with the state tables of the fleet kernel (`firmware_sim.vector_fleet`:
`SWITCH`, `TIMER_END`) and the pinned machine of docs/concepts.md:

* slices j = (device, tier) for every tier with a non-zero share (as GatewayCore), W from the
  device's rated W split per tier by `edge_agent.device.split_w` (the birth inventory's numbers);
* a round at now_ms: (1) refractory slices whose timer ended (end <= now) become flexible
  (ER → EF, DR → DF); (2) every flexible slice draws U(0, 1): EF → DR when U < p_off[tier]
  (never the black tier), DF → ER when U < p_on[tier]; (3) a switch into DR starts a timer of
  t_df + U{0..t_dv} ms, into ER t_ef + U{0..t_ev} ms (integers, as edge_agent.machine);
* `aggregate()`: integer W and slice counts per tier and state, the state report's `p_w`/`count`.

What differs from the agent model, by design: demand is each device's rated W (the
thermostat physics of `ThermostaticDevice` is not stepped: air conditioners count as constant
loads), the random stream is numpy's (not the project PRNG: same distribution, other draws), and
customer overrides are not modelled. Cost: a few array operations per round instead of a Python
loop over every slice (bench.mqtt prints both models).
"""
from __future__ import annotations

import numpy as np

from edge_agent.aggregate import Aggregate
from edge_agent.device import shares_to_ppm, split_w
from edge_agent.states import DF, DR, EF, ER
from firmware_sim.vector_fleet import SWITCH, TIMER_END

_SWITCH = np.asarray(SWITCH, dtype=np.int8)
_TIMER_END = np.asarray(TIMER_END, dtype=np.int8)


class VectorGatewayCore:
    """GatewayCore's round on arrays (module docstring). `seed` seeds numpy's generator."""

    def __init__(self, gateway_id: str, devices, params, seed: int = 1) -> None:
        self.gateway_id = gateway_id
        self.params = params
        k = self.k = params.k
        self.devices = sorted(devices, key=lambda d: d.device_id)
        tiers, watts = [], []
        for d in self.devices:
            ppm = shares_to_ppm(d.tier_shares, k, "%s.tier_shares" % d.device_id)
            parts = split_w(int(d.rated_w), ppm)
            for i in range(k):
                if ppm[i] > 0:
                    tiers.append(i)
                    watts.append(parts[i])
        self.tier = np.asarray(tiers, dtype=np.int64)
        self.slice_w = np.asarray(watts, dtype=np.int64)
        self.state = np.full(self.tier.size, EF, dtype=np.int8)
        self.timer_end_ms = np.zeros(self.tier.size, dtype=np.int64)
        self._not_black = self.tier != k - 1
        self.rng = np.random.default_rng(seed)
        self.p_on = np.ones(k)
        self.p_off = np.zeros(k)
        self.last_valid_ms = None
        self.now_ms = None
        self.rounds = 0
        self.last_switches = (0, 0)
        self._aggregate = self._count()

    def apply_control(self, p_on, p_off, now_ms: int) -> None:
        """The vector of this round (the agent has decided it, fail-safe included)."""
        self.p_on = np.clip(np.asarray(p_on, dtype=float), 0.0, 1.0)
        off = np.clip(np.asarray(p_off, dtype=float), 0.0, 1.0)
        off[self.k - 1] = 0.0
        self.p_off = off
        self.last_valid_ms = now_ms

    def step(self, now_ms: int) -> Aggregate:
        if self.now_ms is not None and now_ms < self.now_ms:
            raise ValueError("now_ms: %d is before the previous round %d" % (now_ms, self.now_ms))
        st = self.state
        ended = ((st == ER) | (st == DR)) & (self.timer_end_ms <= now_ms)
        st[ended] = _TIMER_END[st[ended]]
        u = self.rng.random(st.size)
        off = (st == EF) & self._not_black & (u < self.p_off[self.tier])
        on = (st == DF) & (u < self.p_on[self.tier])
        n_off, n_on = int(off.sum()), int(on.sum())
        p = self.params
        if n_off:
            st[off] = _SWITCH[EF]
            self.timer_end_ms[off] = now_ms + p.t_df_ms + self.rng.integers(0, p.t_dv_ms + 1, n_off)
        if n_on:
            st[on] = _SWITCH[DF]
            self.timer_end_ms[on] = now_ms + p.t_ef_ms + self.rng.integers(0, p.t_ev_ms + 1, n_on)
        self.last_switches = (n_on, n_off)
        self.now_ms = now_ms
        self.rounds += 1
        self._aggregate = self._count()
        return self._aggregate

    def _count(self) -> Aggregate:
        k = self.k
        key = self.tier * 4 + self.state
        w = np.bincount(key, weights=self.slice_w, minlength=4 * k).reshape(k, 4)
        n = np.bincount(key, minlength=4 * k).reshape(k, 4)
        agg = Aggregate(k, self.now_ms)
        agg.w = [[int(round(x)) for x in row] for row in w]
        agg.count = [[int(x) for x in row] for row in n]
        return agg

    def aggregate(self) -> Aggregate:
        return self._aggregate
