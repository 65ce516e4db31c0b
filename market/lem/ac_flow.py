"""The AC power flow of a cleared schedule, with the feeder's controls (regulator taps, capacitor
controls, inverter controls), one network factorized per control state.

For one interval: the feeder's loads × the load-shape factor, the market's net injections per
node location (kW, generation positive) as constant-power injections. When the feeder's controls
are on (`Feeder.controls_on`, with regulators, capacitor or inverter controls), the control state
they settle at is found first by `market.network.solve_with_controls` on a copy of the feeder that
carries the injections as constant-PQ generators; the operating point is then solved on the
`FeederNetwork` of that control state. Each distinct control state (taps, capacitor steps,
controlled inverter outputs) is built and factorized once and kept (`factorizations` counts them);
re-solves of the same state are warm and reuse the factorization.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from market.network import FeederNetwork, Generator, Snapshot, solve_with_controls
from market.network.controls import regulator_taps

from market.lem.network_data import nominal_load_kw

# constant power over the whole practical range (matches FeederNetwork's set_injection)
_GEN_VMIN_PU, _GEN_VMAX_PU = 0.5, 2.0


@dataclass
class OperatingPoint:
    """The AC solution of one interval's schedule."""
    interval: int
    snapshot: Snapshot
    network: FeederNetwork           # solved at this point (`network.last`): linearise it here
    injection_kw: np.ndarray         # market net injection per node location (the network's order)
    taps: dict[str, float] = field(default_factory=dict)
    control_iterations: int = 0

    def overloads(self):
        """Line·phase rows above 100 % of their normal rating."""
        return self.snapshot.overloaded_branches()

    def voltage_violations(self):
        return self.snapshot.voltage_violations()


def _has_controls(feeder) -> bool:
    return feeder.controls_on and bool(feeder.regulators or feeder.cap_controls or feeder.inv_controls)


def _control_key(feeder) -> tuple:
    taps = tuple(round(w.tap_pu, 9) for tr in feeder.transformers for w in tr.windings)
    caps = tuple(tuple(c.states) for c in feeder.capacitors)
    ders = tuple((round(g.kw, 6), round(g.kvar, 6)) for g in feeder.generators if g.inverter is not None)
    return taps, caps, ders


def _apply_control_state(target, source) -> None:
    for tt, ts in zip(target.transformers, source.transformers):
        for wt, ws in zip(tt.windings, ts.windings):
            wt.tap_pu = ws.tap_pu
    for ct, cs in zip(target.capacitors, source.capacitors):
        ct.states = list(cs.states)
    for gt, gs in zip(target.generators, source.generators):
        gt.kw, gt.kvar = gs.kw, gs.kvar


class ACPowerFlow:
    """AC power flow of market schedules on `feeder` (never modified: the class works on copies)."""

    def __init__(self, feeder, controls: bool | None = None):
        self.base = copy.deepcopy(feeder)
        self.controls = _has_controls(self.base) if controls is None else bool(controls) and _has_controls(self.base)
        self._networks: dict[tuple, FeederNetwork] = {}
        self._loads = [(ld.name, ld.kw, ld.kvar) for ld in self.base.loads]
        probe = self._network(_control_key(self.base), self.base)
        self.locations: list[str] = probe.location_ids()
        self._col = {loc: i for i, loc in enumerate(self.locations)}
        self.nominal_load_kw = nominal_load_kw(probe, self.locations)  # D per node location at shape 1.0

    @property
    def factorizations(self) -> int:
        """Networks built and factorized so far (one per distinct control state)."""
        return len(self._networks)

    def _network(self, key: tuple, state) -> FeederNetwork:
        fn = self._networks.get(key)
        if fn is None:
            feeder = copy.deepcopy(self.base)
            _apply_control_state(feeder, state)
            fn = self._networks[key] = FeederNetwork(feeder)
        return fn

    def _settle_controls(self, scale: float, injection_kw: np.ndarray):
        """The control state the feeder's controls reach with these loads and injections."""
        work = copy.deepcopy(self.base)
        for ld in work.loads:
            ld.kw, ld.kvar = ld.kw * scale, ld.kvar * scale
        for j in np.nonzero(injection_kw)[0]:
            bus, _, node = self.locations[j].partition(".")
            work.generators.append(Generator(f"lem_{bus}_{node}", bus, (int(node), 0), 1, float(injection_kw[j]), 0.0,
                                             work.buses[bus].kv_base_ln, "wye", _GEN_VMIN_PU, _GEN_VMAX_PU))
        res = solve_with_controls(work)
        return work, res.control_iterations

    def solve(self, interval: int, scale: float, injection_kw: np.ndarray | None = None) -> OperatingPoint:
        """Solve the feeder with loads × `scale` and `injection_kw` per node location (None: none).
        Raises PowerFlowNotConverged (market.network) if the power flow or the controls do not settle."""
        inj = np.zeros(len(self.locations)) if injection_kw is None else np.asarray(injection_kw, float)
        if inj.shape != (len(self.locations),) or not np.all(np.isfinite(inj)):
            raise ValueError(f"injection_kw: need {len(self.locations)} finite values, one per node location")
        control_iterations = 0
        state = self.base
        if self.controls:
            state, control_iterations = self._settle_controls(scale, inj)
        fn = self._network(_control_key(state), state)
        for name, kw, kvar in self._loads:
            fn.set_load(name, kw * scale, kvar * scale)
        for j, loc in enumerate(self.locations):
            fn.set_injection(loc, p_kw=float(inj[j]))
        snap = fn.solve()
        return OperatingPoint(interval, snap, fn, inj.copy(), regulator_taps(fn.feeder), control_iterations)

    def injections_of(self, per_location: dict[str, float]) -> np.ndarray:
        """{node location: kW} → the array in this network's location order."""
        out = np.zeros(len(self.locations))
        for loc, kw in per_location.items():
            out[self._col[loc]] += kw
        return out
