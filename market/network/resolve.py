"""Many power flows of one feeder with its controls settled: one network per control state, kept.

`ControlledResolver(feeder)` answers "what does this feeder do with these loads and these
constant-power injections, controls acting" again and again (the market's AC check: every interval
of every iteration) without rebuilding anything it has built before:

- the control loop is `controls.solve_with_controls`'s (OpenDSS static control mode: sample every
  regulator, capacitor control, Q(V) curve and InvControl, execute the actions of the shortest
  delay, until none acts), run on the resolver's own copy of the feeder;
- every solve starts from the feeder's own control state (its taps, capacitor steps and DER
  outputs as read): the state a schedule settles at depends on the schedule only, not on which
  schedule was solved before (taps have a dead band, so carrying them over would make the answer
  path-dependent); the voltages of the previous solve are the warm start;
- each control state visited (taps of every transformer, capacitor steps) keeps its factorized
  `Network`; a tap or capacitor move looks the next state up, and builds it from the previous
  network (`build_network(previous=…, changed=…)`: only the moved elements' Yprims) only the first
  time. Q(V) and inverter moves change injections only. `builds` counts the networks built;
  at most `max_networks` are kept (least recently used dropped; default ~1e6 nodes' worth);
- `method` is the solver's (`solver.solve`); "plain" by default, as in `timeseries.qsts`: most
  networks here are solved a few times only, where the reduced method's dense reduction and chord
  Jacobian (built on a network's second solve) cost more than they save;
- one `Atoms` structure (the loads/DER compiled once); each result gets its own copy of the atom
  powers, so a result can be linearised (`sensitivity.SensitivityModel(result)`) after other
  solves.

Loads are given per feeder load (kW, kvar, in `feeder.loads` order); injections per node as
complex VA (generation positive, `FeederNetwork`'s `s_inject_va`). Raises PowerFlowNotConverged if
a power flow does not converge or the controls still act after `max_control_iter` iterations.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np

from market.network.controls import _cap_action, _inverter_actions, _qv_actions, _regulator_action, regulator_taps
from market.network.errors import PowerFlowNotConverged
from market.network.injections import compile_atoms
from market.network.limits import BranchIndex, build_branch_index, node_limits
from market.network.model import Feeder
from market.network.snapshot import Snapshot, snapshot_from_result
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import Network, build_network


class ControlledResolver:
    """Repeated solves of one feeder (copied: the caller's object is never modified)."""

    def __init__(self, feeder: Feeder, tol_pu: float = 1e-9, max_iter: int = 200, max_control_iter: int = 100,
                 max_networks: int | None = None, method: str = "plain"):
        self.feeder = copy.deepcopy(feeder).validate()
        self.tol_pu, self.max_iter, self.max_control_iter = tol_pu, max_iter, max_control_iter
        self.method = method
        self._base = self._state()
        self._gen_base = [(g.kw, g.kvar) for g in self.feeder.generators]
        net = build_network(self.feeder)
        self.atoms = compile_atoms(self.feeder, net.index, net.n)
        # default: ~1e6 nodes' worth of networks (IEEE 123: 512, IEEE 8500: ~80)
        self.max_networks = max(8, min(512, 1_000_000 // net.n)) if max_networks is None else max(1, int(max_networks))
        self.owners = list(self.feeder.loads) + list(self.feeder.generators)  # compile_atoms' owner order
        self._nets: OrderedDict[tuple, Network] = OrderedDict({self._key(self._base): net})
        self.branches: BranchIndex = build_branch_index(net)  # the same rows in every control state
        self.limits = node_limits(self.feeder, net.nodes)
        self.builds = 1
        self._v: np.ndarray | None = None

    @property
    def network(self) -> Network:
        """The network of the feeder's own control state (node order, locations, index)."""
        return self._nets.get(self._key(self._base)) or next(iter(self._nets.values()))

    @property
    def controls(self) -> bool:
        fd = self.feeder
        return fd.controls_on and bool(fd.regulators or fd.cap_controls or fd.inv_controls)

    # --- control state ---------------------------------------------------------------------
    def _state(self) -> tuple[tuple, tuple]:
        fd = self.feeder
        taps = tuple(tuple(w.tap_pu for w in tr.windings) for tr in fd.transformers)
        caps = tuple(tuple(c.states) for c in fd.capacitors)
        return taps, caps

    @staticmethod
    def _key(state) -> tuple:
        taps, caps = state
        return tuple(tuple(round(t, 9) for t in tr) for tr in taps), caps

    def _restore(self) -> None:
        fd = self.feeder
        taps, caps = self._base
        for tr, tt in zip(fd.transformers, taps):
            for w, t in zip(tr.windings, tt):
                w.tap_pu = t
        for c, s in zip(fd.capacitors, caps):
            c.states = list(s)
        for g, (kw, kvar) in zip(fd.generators, self._gen_base):
            g.kw, g.kvar = kw, kvar

    def _network_for_state(self, previous: Network, previous_state) -> Network:
        state = self._state()
        key = self._key(state)
        net = self._nets.get(key)
        if net is not None:
            self._nets.move_to_end(key)
            return net
        fd = self.feeder
        changed = {("transformer", tr.name) for tr, a, b in zip(fd.transformers, state[0], previous_state[0]) if a != b}
        changed |= {("capacitor", c.name) for c, a, b in zip(fd.capacitors, state[1], previous_state[1]) if a != b}
        net = build_network(fd, previous=previous, changed=changed)
        self.builds += 1
        self._nets[key] = net
        while len(self._nets) > self.max_networks:
            self._nets.popitem(last=False)
        return net

    def _atoms_now(self):
        """A copy of the atoms with the powers of the feeder's loads/DER now (static arrays shared)."""
        kw = np.array([el.kw for el in self.owners], float)
        kvar = np.array([el.kvar for el in self.owners], float)
        at = copy.copy(self.atoms)
        at.s_va = (kw[at.owner] * at.p_share + 1j * kvar[at.owner] * at.q_share) * 1000.0
        return at

    # --- solves ----------------------------------------------------------------------------
    def solve(self, load_kw, load_kvar, s_inject_va: np.ndarray | None = None,
              controls: bool | None = None) -> PowerFlowResult:
        """Power flow with the loads (kW, kvar per feeder load) and node injections (VA, generation +),
        the controls settled (`controls` None: the feeder's own setting). `result.taps`,
        `result.control_iterations`, `result.control_state` (the state's key) are set."""
        fd = self.feeder
        self._restore()
        for ld, kw, kvar in zip(fd.loads, load_kw, load_kvar):
            ld.kw, ld.kvar = float(kw), float(kvar)
        act = self.controls if controls is None else bool(controls) and self.controls
        state = self._state()
        net = self._network_for_state(self.network, state)
        inj = None if s_inject_va is None else np.asarray(s_inject_va, complex).copy()
        res = solve(net, self.tol_pu, self.max_iter, atoms=self._atoms_now(), v0=self._v, s_inject_va=inj,
                    method=self.method)
        its = 0
        while act:
            actions = [a for r in fd.regulators if r.enabled for a in [_regulator_action(fd, res, r)] if a]
            actions += [a for c in fd.cap_controls if c.enabled for a in [_cap_action(fd, res, c)] if a]
            actions += _qv_actions(fd, res) + _inverter_actions(fd, res)
            if not actions:
                break
            its += 1
            if its > self.max_control_iter:
                raise PowerFlowNotConverged(f"controls on {fd.name!r} still acting after {self.max_control_iter} "
                                            "iterations", self.max_control_iter, float("inf"))
            first = min(a.delay_s for a in actions)
            for a in [a for a in actions if a.delay_s == first]:
                a.apply()
            net = self._network_for_state(net, state)
            state = self._state()
            res = solve(net, self.tol_pu, self.max_iter, atoms=self._atoms_now(), v0=res.v, s_inject_va=inj,
                        method=self.method)
        self._v = res.v
        res.taps = regulator_taps(fd)
        res.control_iterations = its
        res.control_state = self._key(state)
        return res

    def snapshot(self, res: PowerFlowResult) -> Snapshot:
        """Flows, currents, loading and voltage limits of a result of this resolver (taps and capacitor
        steps change no branch row: one branch index serves every control state)."""
        return snapshot_from_result(res, self.branches, self.limits)
