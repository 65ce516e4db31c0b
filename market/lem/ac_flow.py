"""The AC power flow of a cleared schedule, with the feeder's controls (regulator taps, capacitor
controls, inverter controls), one network factorized per control state.

For one interval: the feeder's loads × the load-shape factor, the market's net injections per
node location (kW, generation positive) as constant-power node injections, the controls settled
(`market.network.resolve.ControlledResolver`: OpenDSS static control mode, started from the
feeder's own control state in every interval, so that the state depends on the schedule only;
warm-started from the previous solve's voltages). Each control state visited (taps, capacitor
steps) is built and factorized once and kept (`factorizations` counts them); re-solves of a state
are warm and reuse its factorization. An `OperatingPoint` keeps its own solved result, so it can
be linearised (`network_data.interval_network`) after the other intervals were solved.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.network import Snapshot
from market.network.resolve import ControlledResolver
from market.network.solver import PowerFlowResult
from market.network.ybus import Network

from market.lem.network_data import nominal_load_kw


@dataclass
class OperatingPoint:
    """The AC solution of one interval's schedule."""
    interval: int
    snapshot: Snapshot
    result: PowerFlowResult          # the solved state (linearise it: network_data.interval_network)
    injection_kw: np.ndarray         # market net injection per node location (the network's order)
    taps: dict[str, float] = field(default_factory=dict)
    control_iterations: int = 0

    @property
    def network(self) -> Network:
        """The factorized network of this point's control state (shared by points in that state)."""
        return self.result.network

    def overloads(self):
        """Line·phase rows above 100 % of their normal rating."""
        return self.snapshot.overloaded_branches()

    def voltage_violations(self):
        return self.snapshot.voltage_violations()


class ACPowerFlow:
    """AC power flow of market schedules on `feeder` (never modified: the resolver works on a copy)."""

    def __init__(self, feeder, controls: bool | None = None):
        self.resolver = ControlledResolver(feeder)
        self.base = self.resolver.feeder
        self.controls = self.resolver.controls if controls is None else bool(controls) and self.resolver.controls
        net = self.resolver.network
        self.locations: list[str] = net.location_ids()
        self._col = {loc: i for i, loc in enumerate(self.locations)}
        self._node = np.array([net.index_of(loc) for loc in self.locations], dtype=np.int64)
        self._n = net.n
        self._loads = np.array([(ld.kw, ld.kvar) for ld in self.base.loads], float).reshape(-1, 2)
        self.nominal_load_kw = nominal_load_kw(self.base, self.locations)  # D per node location at shape 1.0

    @property
    def factorizations(self) -> int:
        """Networks built and factorized so far (one per distinct control state visited)."""
        return self.resolver.builds

    def solve(self, interval: int, scale: float, injection_kw: np.ndarray | None = None) -> OperatingPoint:
        """Solve the feeder with loads × `scale` and `injection_kw` per node location (None: none).
        Raises PowerFlowNotConverged (market.network) if the power flow or the controls do not settle."""
        inj = np.zeros(len(self.locations)) if injection_kw is None else np.asarray(injection_kw, float)
        if inj.shape != (len(self.locations),) or not np.all(np.isfinite(inj)):
            raise ValueError(f"injection_kw: need {len(self.locations)} finite values, one per node location")
        s = np.zeros(self._n, complex)
        s[self._node] = inj * 1000.0
        res = self.resolver.solve(self._loads[:, 0] * scale, self._loads[:, 1] * scale, s, self.controls)
        snap = self.resolver.snapshot(res)
        return OperatingPoint(interval, snap, res, inj.copy(), dict(res.taps), res.control_iterations)

    def injections_of(self, per_location: dict[str, float]) -> np.ndarray:
        """{node location: kW} → the array in this network's location order."""
        out = np.zeros(len(self.locations))
        for loc, kw in per_location.items():
            out[self._col[loc]] += kw
        return out
