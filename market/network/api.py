"""The contract the market (LEM clearing) uses, a feeder-backed implementation, and a fake.

Per interval the LEM: sets bus·phase injections (its schedule), solves the AC power flow,
reads flows/voltages, currents and loading (`snapshot.Snapshot`, with overloaded branches and
voltage violations against the model's ratings and limits), and asks for linear sensitivities
for its critical set — PTDF rows for chosen (line, phase), dV rows for chosen (bus, phase), loss
factors — as numpy arrays with explicit index lists (`sensitivity.Sensitivities`).

Places are location ids ("671.1", a whole bus "671") or (bus, node) tuples; branch rows are
"line.650632.1" or ("line.650632", 1) (`locations.py`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from market.network.controls import regulator_taps
from market.network.injections import compile_atoms
from market.network.limits import NodeLimits, build_branch_index, default_limits, node_limits
from market.network.locations import LocationIndex, as_branch_key
from market.network.model import V_MAX_PU, V_MIN_PU, Feeder
from market.network.sensitivity import Key, Sensitivities, SensitivityModel
from market.network.snapshot import Snapshot, snapshot_from_result
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import build_network

Where = str | Key  # "671.1", "671" (whole bus) or ("671", 1)


@runtime_checkable
class NetworkModel(Protocol):
    def nodes(self) -> list[Key]: ...

    def location_ids(self) -> list[str]: ...

    def lines(self) -> list[Key]: ...

    def set_injection(self, where: Where, node: int | None = None, p_kw: float | None = None,
                      q_kvar: float = 0.0) -> None: ...

    def set_load(self, name: str, kw: float, kvar: float) -> None: ...

    def solve(self) -> Snapshot: ...

    def sensitivities(self, injections: list[Where], lines: list[Where], voltages: list[Where]) -> Sensitivities: ...


def injection_split(locations: LocationIndex, where: Where, node: int | None, p_kw: float | None,
                    q_kvar: float) -> list[tuple[int, float, float]]:
    """[(node position, p_kw, q_kvar)] of one set_injection call: `("675", 1, p)`, `("675.1", p_kw=p)`
    or a whole bus `("675", p_kw=p)`, split equally over its phase nodes (1–3)."""
    if node is not None and (isinstance(node, bool) or not isinstance(node, int)):
        raise TypeError(f"node must be an int (got {node!r}); with a location id pass p_kw= by keyword")
    if p_kw is None:
        raise TypeError("set_injection needs p_kw (e.g. set_injection('675.1', p_kw=120.0))")
    if node is not None:
        return [(locations.index_of((where, node)), float(p_kw), float(q_kvar))]
    idx = locations.indices_of(where)
    return [(i, float(p_kw) / len(idx), float(q_kvar) / len(idx)) for i in idx]


def _keys(locations: LocationIndex, items: list[Where] | None) -> list[Key] | None:
    return None if items is None else [locations.key_of(x) for x in items]


class FeederNetwork:
    """NetworkModel over a colorgrid feeder: factorize once, re-solve warm after every edit.

    Ratings and voltage limits are read from the feeder when the network is built; change them
    through `set_rating` / `set_voltage_limits` here (the tables are re-read at the next solve;
    edits made on `feeder` directly are not seen)."""

    def __init__(self, feeder: Feeder):
        self.feeder = feeder.validate()
        self.net = build_network(feeder)
        self.atoms = compile_atoms(feeder, self.net.index, self.net.n)
        self.s_inject_va = np.zeros(self.net.n, complex)
        self.last: PowerFlowResult | None = None
        self._model: SensitivityModel | None = None
        self._branches = build_branch_index(self.net)
        self._limits = node_limits(self.feeder, self.net.nodes)
        self._branches_stale = self._limits_stale = False

    @classmethod
    def from_dss(cls, path: str | Path) -> "FeederNetwork":
        from market.network.opendss_import import load_dss

        return cls(load_dss(path)[0])

    def nodes(self) -> list[Key]:
        return list(self.net.nodes)

    def location_ids(self) -> list[str]:
        return self.net.location_ids()

    def index_of(self, location: Where) -> int:
        return self.net.index_of(location)

    def lines(self) -> list[Key]:
        return list(self._branches.keys)

    def branch_ids(self) -> list[str]:
        return list(self._branches.ids)

    def set_injection(self, where: Where, node: int | None = None, p_kw: float | None = None,
                      q_kvar: float = 0.0) -> None:
        """Constant-power injection (generation positive) at a bus·phase, replacing the previous one:
        `set_injection("675", 1, 120.0)`, `set_injection("675.1", p_kw=120.0)`, or a whole bus
        `set_injection("675", p_kw=360.0)` (equal shares on its phase nodes)."""
        for i, p, q in injection_split(self.net.locations, where, node, p_kw, q_kvar):
            self.s_inject_va[i] = complex(p, q) * 1000.0
        self._model = None

    def set_load(self, name: str, kw: float, kvar: float) -> None:
        self.atoms.set_power(f"load.{name}", kw, kvar)
        self._model = None

    def set_rating(self, element: str, norm_amps: float | None = None, emerg_amps: float | None = None,
                   winding: int | None = None) -> None:
        """Override ampere ratings (`Feeder.set_rating`); applies from the next solve."""
        self.feeder.set_rating(element, norm_amps, emerg_amps, winding)
        self._branches_stale = True

    def set_voltage_limits(self, v_min_pu: float | None = None, v_max_pu: float | None = None,
                           buses: list[str] | None = None) -> None:
        """Override voltage limits (`Feeder.set_voltage_limits`; buses None = all)."""
        self.feeder.set_voltage_limits(v_min_pu, v_max_pu, buses)
        self._limits_stale = True

    def solve(self, tol_pu: float = 1e-9) -> Snapshot:
        v0 = None if self.last is None else self.last.v
        self.last = solve(self.net, tol_pu, atoms=self.atoms, v0=v0, s_inject_va=self.s_inject_va.copy())
        self.last.taps = regulator_taps(self.feeder)
        self._model = None
        if self._branches_stale:
            self._branches, self._branches_stale = build_branch_index(self.net), False
        if self._limits_stale:
            self._limits, self._limits_stale = node_limits(self.feeder, self.net.nodes), False
        return snapshot_from_result(self.last, self._branches, self._limits)

    def sensitivities(self, injections: list[Where] | None = None, lines: list[Where] | None = None,
                      voltages: list[Where] | None = None) -> Sensitivities:
        """Rows/columns as bus·phase ids or (bus, node), branch ids or (element, node); None = all."""
        if self.last is None:
            self.solve()
        if self._model is None:
            self._model = SensitivityModel(self.last)
        loc = self.net.locations
        rows = None if lines is None else [as_branch_key(x) for x in lines]
        return self._model.compute(_keys(loc, injections), rows, _keys(loc, voltages))


class FakeNetworkModel:
    """Linear stand-in for tests of market code: flows = base + PTDF·P, |V| = base + dV/dP·P.

    A linear model has no AC solution, hence no branch currents: its snapshots say so
    (`has_currents` False, current/loading fields None, `overloaded_branches()` raises
    CurrentsUnavailableError). Voltage limits (scalars or one per node, default 0.95–1.05 pu)
    make `voltage_violations()` work as on a FeederNetwork snapshot."""

    def __init__(self, nodes: list[Key], lines: list[Key], ptdf: np.ndarray, dv_dp: np.ndarray,
                 base_flow_kw: np.ndarray, base_v_pu: np.ndarray, loss_factor: np.ndarray,
                 v_min_pu: float | np.ndarray = V_MIN_PU, v_max_pu: float | np.ndarray = V_MAX_PU):
        self._nodes, self._lines = list(nodes), list(lines)
        self.ptdf, self.dv_dp = np.asarray(ptdf, float), np.asarray(dv_dp, float)
        self.base_flow_kw, self.base_v_pu = np.asarray(base_flow_kw, float), np.asarray(base_v_pu, float)
        self.loss_factor = np.asarray(loss_factor, float)
        self.p_kw = np.zeros(len(nodes))
        self._loc = LocationIndex(self._nodes)
        n = len(self._nodes)
        checked = default_limits(self._nodes).checked
        self._limits = NodeLimits(np.broadcast_to(np.asarray(v_min_pu, float), (n,)).copy(),
                                  np.broadcast_to(np.asarray(v_max_pu, float), (n,)).copy(), checked)

    def nodes(self) -> list[Key]:
        return list(self._nodes)

    def location_ids(self) -> list[str]:
        return list(self._loc.ids)

    def lines(self) -> list[Key]:
        return list(self._lines)

    def set_injection(self, where: Where, node: int | None = None, p_kw: float | None = None,
                      q_kvar: float = 0.0) -> None:
        """As FeederNetwork.set_injection; Q has no effect on this P-only linear model."""
        for i, p, _ in injection_split(self._loc, where, node, p_kw, q_kvar):
            self.p_kw[i] = p

    def set_load(self, name: str, kw: float, kvar: float) -> None:
        raise KeyError(f"FakeNetworkModel has no loads (asked for {name!r})")

    def solve(self) -> Snapshot:
        flows = self.base_flow_kw + self.ptdf @ self.p_kw
        return Snapshot(self.nodes(), self.base_v_pu + self.dv_dp @ self.p_kw, self.lines(), flows,
                        float(self.loss_factor @ self.p_kw), 0, limits=self._limits, locations=self._loc)

    def sensitivities(self, injections=None, lines=None, voltages=None) -> Sensitivities:
        ci = [self._loc.index_of(k) for k in (injections or self._nodes)]
        li = [self._lines.index(as_branch_key(k)) for k in (lines or self._lines)]
        vi = [self._loc.index_of(k) for k in (voltages or self._nodes)]
        snap = self.solve()
        zeros = np.zeros((len(vi), len(ci)))
        return Sensitivities([self._nodes[i] for i in ci], [self._lines[i] for i in li], [self._nodes[i] for i in vi],
                             self.ptdf[np.ix_(li, ci)], np.zeros((len(li), len(ci))), self.dv_dp[np.ix_(vi, ci)],
                             zeros, self.loss_factor[ci], np.zeros(len(ci)), snap.line_p_kw[li], snap.v_pu[vi],
                             snap.losses_kw)
