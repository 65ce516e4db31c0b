"""The contract the market (LEM clearing) uses, a feeder-backed implementation, and a fake.

Per interval the LEM: sets bus·phase injections (its schedule), solves the AC power flow,
reads flows/voltages, and asks for linear sensitivities for its critical set — PTDF rows for
chosen (line, phase), dV rows for chosen (bus, phase), loss factors — as numpy arrays with
explicit index lists (`sensitivity.Sensitivities`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from market.network.controls import regulator_taps
from market.network.injections import compile_atoms
from market.network.model import Feeder
from market.network.sensitivity import Key, Sensitivities, SensitivityModel
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import build_network


@runtime_checkable
class NetworkModel(Protocol):
    def nodes(self) -> list[Key]: ...

    def lines(self) -> list[Key]: ...

    def set_injection(self, bus: str, node: int, p_kw: float, q_kvar: float = 0.0) -> None: ...

    def set_load(self, name: str, kw: float, kvar: float) -> None: ...

    def solve(self) -> "Snapshot": ...

    def sensitivities(self, injections: list[Key], lines: list[Key], voltages: list[Key]) -> Sensitivities: ...


class Snapshot:
    """Solved state as plain arrays: |V| pu per node, sending-end kW per line·phase, losses."""

    def __init__(self, nodes: list[Key], v_pu: np.ndarray, lines: list[Key], line_p_kw: np.ndarray,
                 losses_kw: float, iterations: int):
        self.nodes, self.v_pu, self.lines, self.line_p_kw = nodes, v_pu, lines, line_p_kw
        self.losses_kw, self.iterations = losses_kw, iterations


class FeederNetwork:
    """NetworkModel over a colorgrid feeder: factorize once, re-solve warm after every edit."""

    def __init__(self, feeder: Feeder):
        self.feeder = feeder.validate()
        self.net = build_network(feeder)
        self.atoms = compile_atoms(feeder, self.net.index, self.net.n)
        self.s_inject_va = np.zeros(self.net.n, complex)
        self.last: PowerFlowResult | None = None
        self._model: SensitivityModel | None = None

    @classmethod
    def from_dss(cls, path: str | Path) -> "FeederNetwork":
        from market.network.opendss_import import load_dss

        return cls(load_dss(path)[0])

    def nodes(self) -> list[Key]:
        return list(self.net.nodes)

    def lines(self) -> list[Key]:
        return [(f"{e}", k) for e, k, *_ in self._flows_template()]

    def _flows_template(self):
        if self.last is None:
            self.solve()
        return self.last.branch_flows()

    def set_injection(self, bus: str, node: int, p_kw: float, q_kvar: float = 0.0) -> None:
        """Constant-power injection (generation positive) at bus·node, replacing the previous one."""
        self.s_inject_va[self.net.index[(bus, node)]] = complex(p_kw, q_kvar) * 1000.0
        self._model = None

    def set_load(self, name: str, kw: float, kvar: float) -> None:
        self.atoms.set_power(f"load.{name}", kw, kvar)
        self._model = None

    def solve(self, tol_pu: float = 1e-9) -> Snapshot:
        v0 = None if self.last is None else self.last.v
        self.last = solve(self.net, tol_pu, atoms=self.atoms, v0=v0, s_inject_va=self.s_inject_va.copy())
        self.last.taps = regulator_taps(self.feeder)
        self._model = None
        flows = self.last.branch_flows()
        return Snapshot(self.nodes(), self.last.v_pu, [(e, k) for e, k, *_ in flows],
                        np.array([f[3] for f in flows]), self.last.losses_va().real / 1000.0, self.last.iterations)

    def sensitivities(self, injections: list[Key] | None = None, lines: list[Key] | None = None,
                      voltages: list[Key] | None = None) -> Sensitivities:
        if self.last is None:
            self.solve()
        if self._model is None:
            self._model = SensitivityModel(self.last)
        return self._model.compute(injections, lines, voltages)


class FakeNetworkModel:
    """Linear stand-in for tests of market code: flows = base + PTDF·P, |V| = base + dV/dP·P."""

    def __init__(self, nodes: list[Key], lines: list[Key], ptdf: np.ndarray, dv_dp: np.ndarray,
                 base_flow_kw: np.ndarray, base_v_pu: np.ndarray, loss_factor: np.ndarray):
        self._nodes, self._lines = list(nodes), list(lines)
        self.ptdf, self.dv_dp = np.asarray(ptdf, float), np.asarray(dv_dp, float)
        self.base_flow_kw, self.base_v_pu = np.asarray(base_flow_kw, float), np.asarray(base_v_pu, float)
        self.loss_factor = np.asarray(loss_factor, float)
        self.p_kw = np.zeros(len(nodes))

    def nodes(self) -> list[Key]:
        return list(self._nodes)

    def lines(self) -> list[Key]:
        return list(self._lines)

    def set_injection(self, bus: str, node: int, p_kw: float, q_kvar: float = 0.0) -> None:
        self.p_kw[self._nodes.index((bus, node))] = p_kw

    def set_load(self, name: str, kw: float, kvar: float) -> None:
        raise KeyError(f"FakeNetworkModel has no loads (asked for {name!r})")

    def solve(self) -> Snapshot:
        flows = self.base_flow_kw + self.ptdf @ self.p_kw
        return Snapshot(self.nodes(), self.base_v_pu + self.dv_dp @ self.p_kw, self.lines(), flows,
                        float(self.loss_factor @ self.p_kw), 0)

    def sensitivities(self, injections=None, lines=None, voltages=None) -> Sensitivities:
        ci = [self._nodes.index(k) for k in (injections or self._nodes)]
        li = [self._lines.index(k) for k in (lines or self._lines)]
        vi = [self._nodes.index(k) for k in (voltages or self._nodes)]
        snap = self.solve()
        zeros = np.zeros((len(vi), len(ci)))
        return Sensitivities([self._nodes[i] for i in ci], [self._lines[i] for i in li], [self._nodes[i] for i in vi],
                             self.ptdf[np.ix_(li, ci)], np.zeros((len(li), len(ci))), self.dv_dp[np.ix_(vi, ci)],
                             zeros, self.loss_factor[ci], np.zeros(len(ci)), snap.line_p_kw[li], snap.v_pu[vi],
                             snap.losses_kw)
