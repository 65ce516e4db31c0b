"""Quasi-static time series (QSTS): the feeder's own load and PV shapes, controls between steps.

`run_qsts(path, mode="daily", steps=96, step_s=900)` compiles the file in OpenDSS, imports it
(`opendss_import`), reads its load shapes and each load's and PVSystem's `daily=`/`yearly=`
(`shapes.read_time_inputs`) and solves one power flow per step, as OpenDSS's
`solve mode=daily|yearly stepsize=… number=…` does:

- step k = 1…N is at t = k·step_s (OpenDSS increments the time before each solve), hour t/3600;
- every load gets kW·Factor·Pmult(hour) and kvar·Factor·Qmult(hour) (`shapes.load_kw_kvar`),
  every PVSystem panel power irradiance·mult(hour)·Pmpp·P-T factor, its inverter switching on at
  %cutin and off at %cutout (state kept from step to step), efficiency and limits
  (`der.inverter_output`);
- the controls then act as in OpenDSS's default control mode for time series (static): after each
  solve every regulator, capacitor control and InvControl is sampled, the actions with the
  shortest delay are executed, until none acts (`controls.py`; taps and capacitor states carry
  over to the next step, delays order actions within a step). Tap moves (in tap steps) and
  capacitor switchings are counted inside the loop;
- every solve is warm: the previous step's voltages start the next (same factorization while the
  taps and capacitor states stand; `build_network(previous=…, changed=…)` when they move).

Every step's solve is checked for convergence (`PowerFlowNotConverged` otherwise, never NaN);
a control loop still acting after `max_control_iter` raises it too. Results per step are arrays
in `QSTSResult` (voltage envelope, violations, losses, taps, capacitor states, watched nodes);
`summary()` gives the totals (tap operations, switchings, hours outside limits per bus, energy
losses in kWh). Units: pu of each bus's base, kW, kWh, hours, seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from market.network.controls import _cap_action, _inverter_actions, _qv_actions, _regulator_action
from market.network.der import inverter_output, xy_value
from market.network.errors import PowerFlowNotConverged, UnsupportedElementError
from market.network.injections import compile_atoms
from market.network.model import Feeder
from market.network.shapes import TimeInputs, load_kw_kvar, pv_shape_mult
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import Network, build_network

MODES = ("daily", "yearly")
DEFAULT_STEPS = {"daily": 24, "yearly": 8760}  # OpenDSS's number= defaults
DEFAULT_STEP_S = 3600.0


@dataclass
class QSTSResult:
    """Per-step results (arrays of length `steps`, row k = step k+1 at `time_s[k]`)."""
    feeder: str
    mode: str
    step_s: float
    time_s: np.ndarray
    v_min_pu: np.ndarray  # lowest / highest phase-node voltage of the step
    v_max_pu: np.ndarray
    v_min_location: list[str]
    v_max_location: list[str]
    violations: np.ndarray  # phase nodes outside their limits
    losses_kw: np.ndarray  # series + shunt element losses (OpenDSS Circuit.Losses), kW
    load_kw: np.ndarray  # total load drawn / DER output, kW (nominal values of the step)
    der_kw: np.ndarray
    der_kvar: np.ndarray
    watched: list[str]  # location ids of v_watched_pu's columns
    v_watched_pu: np.ndarray  # (steps, len(watched))
    regulators: list[str]
    taps_pu: np.ndarray  # (steps, len(regulators)) tap of the controlled winding after the step
    tap_steps: np.ndarray  # the same as integer tap positions from neutral (OpenDSS TapNumber)
    tap_operations: dict[str, int]  # tap steps moved per regulator over the run
    capacitors: list[str]
    cap_states: np.ndarray  # (steps, len(capacitors)) closed steps
    capacitor_switchings: dict[str, int]
    hours_outside_by_bus: dict[str, float]  # hours with a phase node of the bus outside its limits
    iterations: np.ndarray  # power-flow iterations of the step (all control iterations)
    control_iterations: np.ndarray
    v_limits_pu: tuple[float, float] = (0.95, 1.05)
    last: PowerFlowResult | None = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        return len(self.time_s)

    @property
    def step_h(self) -> float:
        return self.step_s / 3600.0

    @property
    def energy_losses_kwh(self) -> float:
        return float(self.losses_kw.sum() * self.step_h)

    def summary(self) -> dict:
        return {"mode": self.mode, "steps": self.steps, "step_s": self.step_s,
                "duration_h": self.steps * self.step_h,
                "tap_operations": int(sum(self.tap_operations.values())),
                "tap_operations_by_regulator": dict(self.tap_operations),
                "capacitor_switchings": int(sum(self.capacitor_switchings.values())),
                "capacitor_switchings_by_capacitor": dict(self.capacitor_switchings),
                "energy_losses_kwh": self.energy_losses_kwh,
                "energy_load_kwh": float(self.load_kw.sum() * self.step_h),
                "energy_der_kwh": float(self.der_kw.sum() * self.step_h),
                "v_min_pu": float(self.v_min_pu.min()), "v_max_pu": float(self.v_max_pu.max()),
                "steps_with_violations": int(np.count_nonzero(self.violations)),
                "hours_outside_limits_by_bus": dict(sorted(self.hours_outside_by_bus.items())),
                "buses_outside_limits": len(self.hours_outside_by_bus)}


class _Run:
    """One QSTS run's state: the feeder, its network, atoms and the counters."""

    def __init__(self, feeder: Feeder, inputs: TimeInputs, mode: str, tol_pu: float, max_iter: int,
                 max_control_iter: int, method: str):
        self.feeder, self.inputs, self.mode, self.method = feeder, inputs, mode, method
        self.tol_pu, self.max_iter, self.max_control_iter = tol_pu, max_iter, max_control_iter
        self.loads = {ld.name: ld for ld in feeder.loads}
        missing = [f"load.{li.name}" for li in inputs.loads if li.name not in self.loads]
        self.pvs = {g.name: g for g in feeder.generators if g.dss_class == "pvsystem"}
        missing += [f"pvsystem.{p.name}" for p in inputs.pvs if p.name not in self.pvs]
        if missing:
            raise UnsupportedElementError(f"time-series inputs without an imported element: {', '.join(missing)}",
                                          missing)
        self.net: Network = build_network(feeder)
        self.atoms = compile_atoms(feeder, self.net.index, self.net.n)
        self.owners = list(feeder.loads) + list(feeder.generators)  # compile_atoms' owner order
        self.tap_moves = {r.name: 0 for r in feeder.regulators}
        self.switchings = {c.name: 0 for c in feeder.capacitors}

    def set_time(self, hr: float) -> None:
        self.feeder.time_h = hr  # time-type capacitor controls
        for li in self.inputs.loads:
            ld = self.loads[li.name]
            ld.kw, ld.kvar = load_kw_kvar(self.inputs, li, self.mode, hr)
        for p in self.inputs.pvs:
            g = self.pvs[p.name]
            inv = g.inverter
            temp = xy_value(p.temp_curve, p.temperature_c) if p.temp_curve else 1.0
            panel = p.irradiance * pv_shape_mult(self.inputs, p, self.mode, hr) * p.pmpp_kw * temp
            if inv.on and panel < p.cutout_kw:  # ComputeInverterPower's on/off state
                inv.on = False
            elif not inv.on and panel >= p.cutin_kw:
                inv.on = True
            inv.eff = xy_value(p.eff_curve, panel / inv.kva) if (p.eff_curve and inv.on) else 1.0
            inv.p_dc_kw, inv.p_available_kw = panel, panel * inv.eff
            g.kw, g.kvar = inverter_output(inv)
        self.refresh_powers()

    def refresh_powers(self) -> None:
        """Atom powers from the feeder's present load/DER kW and kvar (vectorized set_power)."""
        kw = np.array([el.kw for el in self.owners])
        kvar = np.array([el.kvar for el in self.owners])
        at = self.atoms
        at.s_va[:] = (kw[at.owner] * at.p_share + 1j * kvar[at.owner] * at.q_share) * 1000.0

    def solve_step(self, v0: np.ndarray | None) -> tuple[PowerFlowResult, int, int]:
        """Solve, then let the controls act (static mode) until none does; warm from v0."""
        fd = self.feeder
        res = solve(self.net, self.tol_pu, self.max_iter, atoms=self.atoms, v0=v0, method=self.method)
        iters = res.iterations
        for it in range(1, self.max_control_iter + 1):
            actions = []
            if fd.controls_on:
                actions = [a for r in fd.regulators if r.enabled for a in [_regulator_action(fd, res, r)] if a]
                actions += [a for c in fd.cap_controls if c.enabled for a in [_cap_action(fd, res, c)] if a]
            actions += _qv_actions(fd, res) + _inverter_actions(fd, res)
            if not actions:
                return res, iters, it - 1
            first = min(a.delay_s for a in actions)
            todo = [a for a in actions if a.delay_s == first]
            before = self._control_state()
            for a in todo:
                a.apply()
            self._count(before)
            changed = {a.element for a in todo if a.element is not None}
            if changed:
                self.net = build_network(fd, previous=self.net, changed=changed)
            self.refresh_powers()
            res = solve(self.net, self.tol_pu, self.max_iter, atoms=self.atoms, v0=res.v, method=self.method)
            iters += res.iterations
        raise PowerFlowNotConverged(f"controls on {fd.name!r} still acting after {self.max_control_iter} "
                                    "control iterations in one time step", self.max_control_iter, float("inf"))

    def _control_state(self) -> tuple[list[float], list[int]]:
        fd = self.feeder
        taps = [fd.transformer(r.transformer).windings[r.winding - 1].tap_pu for r in fd.regulators]
        return taps, [sum(c.states) for c in fd.capacitors]

    def _count(self, before) -> None:
        taps, caps = self._control_state()
        for r, t0, t1 in zip(self.feeder.regulators, before[0], taps):
            self.tap_moves[r.name] += int(round(abs(t1 - t0) / _tap_step(self.feeder, r)))
        for c, s0, s1 in zip(self.feeder.capacitors, before[1], caps):
            self.switchings[c.name] += int(s0 != s1)


def _tap_step(feeder: Feeder, reg) -> float:
    wd = feeder.transformer(reg.transformer).windings[reg.winding - 1]
    return (wd.max_tap_pu - wd.min_tap_pu) / wd.num_taps


def qsts(feeder: Feeder, inputs: TimeInputs, mode: str = "daily", steps: int | None = None,
         step_s: float = DEFAULT_STEP_S, watch: list[str] | None = None, tol_pu: float = 1e-9,
         max_iter: int = 200, max_control_iter: int = 100, strict: bool = True, on_step=None,
         method: str = "plain") -> QSTSResult:
    """Run QSTS on an imported feeder with its time inputs (see the module docstring).

    `on_step(k, time_s, res)` is called after every step's controls settled (k = 1…steps, `res`
    the step's PowerFlowResult: full node voltages, currents; do not keep it past the call if
    memory matters)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    steps = DEFAULT_STEPS[mode] if steps is None else int(steps)
    if steps < 1 or not (np.isfinite(step_s) and step_s > 0):
        raise ValueError(f"need steps >= 1 and step_s > 0, got {steps}, {step_s}")
    if inputs.unsupported and strict:
        raise UnsupportedElementError(f"{len(inputs.unsupported)} setting(s) not supported in time series: "
                                      f"{', '.join(inputs.unsupported[:20])}", inputs.unsupported)
    run = _Run(feeder, inputs, mode, tol_pu, max_iter, max_control_iter, method)
    net = run.net
    base = net.vbase_v
    real = np.array([k in (1, 2, 3) and feeder.buses[b].kv_base_ln > 0 for b, k in net.nodes])
    lo = np.array([feeder.buses[b].v_min_pu for b, _ in net.nodes])
    hi = np.array([feeder.buses[b].v_max_pu for b, _ in net.nodes])
    locs = net.location_ids()
    bus_of = np.array([b for b, _ in net.nodes])
    checked = np.nonzero(real)[0]
    regs, caps = [r.name for r in feeder.regulators], [c.name for c in feeder.capacitors]
    cols: dict[str, list] = {k: [] for k in ("t", "vmin", "vmax", "imin", "imax", "viol", "loss", "load", "derp",
                                             "derq", "taps", "ntap", "caps", "it", "cit", "watch")}
    hours: dict[str, float] = {}
    watch_idx = None if watch is None else [net.index_of(w) for w in watch]
    v0, res = None, None
    for k in range(1, steps + 1):
        t = k * step_s
        run.set_time(t / 3600.0)
        res, iters, cits = run.solve_step(v0)
        v0 = res.v
        if on_step is not None:
            on_step(k, t, res)
        vpu = np.abs(res.v) / base
        vc = vpu[checked]
        if not np.all(np.isfinite(vc)):
            raise PowerFlowNotConverged(f"step {k}: non-finite voltages", iters, float("inf"))
        out = checked[(vc < lo[checked]) | (vc > hi[checked])]
        for b in set(bus_of[out].tolist()):
            hours[b] = hours.get(b, 0.0) + step_s / 3600.0
        if watch_idx is None:  # default: the DER nodes and the lowest node of the first step
            watch_idx = _default_watch(feeder, net, int(checked[np.argmin(vc)]))
        taps, ncap = run._control_state()
        for key, val in (("t", t), ("vmin", vc.min()), ("vmax", vc.max()), ("imin", checked[np.argmin(vc)]),
                         ("imax", checked[np.argmax(vc)]), ("viol", len(out)),
                         ("loss", res.losses_va().real / 1000.0),
                         ("load", sum(ld.kw for ld in feeder.loads)), ("derp", sum(g.kw for g in feeder.generators)),
                         ("derq", sum(g.kvar for g in feeder.generators)), ("taps", taps),
                         ("ntap", [round((tp - 1.0) / _tap_step(feeder, r)) for tp, r in zip(taps, feeder.regulators)]),
                         ("caps", ncap), ("it", iters), ("cit", cits), ("watch", vpu[watch_idx])):
            cols[key].append(val)
    arr = lambda key, dtype=float: np.array(cols[key], dtype=dtype)  # noqa: E731
    return QSTSResult(feeder.name, mode, float(step_s), arr("t"), arr("vmin"), arr("vmax"),
                      [locs[i] for i in cols["imin"]], [locs[i] for i in cols["imax"]], arr("viol", int),
                      arr("loss"), arr("load"), arr("derp"), arr("derq"), [locs[i] for i in watch_idx],
                      np.array(cols["watch"]).reshape(steps, len(watch_idx)), regs,
                      np.array(cols["taps"], float).reshape(steps, len(regs)),
                      np.array(cols["ntap"], int).reshape(steps, len(regs)), dict(run.tap_moves), caps,
                      np.array(cols["caps"], int).reshape(steps, len(caps)), dict(run.switchings), hours,
                      arr("it", int), arr("cit", int), (float(lo[checked].min()), float(hi[checked].max())), res)


def _default_watch(feeder: Feeder, net: Network, lowest: int, limit: int = 12) -> list[int]:
    idx = [net.index[(g.bus, k)] for g in feeder.generators for k in g.nodes if k in (1, 2, 3)]
    idx = list(dict.fromkeys(idx + [lowest]))
    return idx[:limit]


def run_qsts(path: str | Path, mode: str = "daily", steps: int | None = None, step_s: float = DEFAULT_STEP_S,
             watch: list[str] | None = None, v_min_pu: float | None = None, v_max_pu: float | None = None,
             tol_pu: float = 1e-9, max_iter: int = 200, max_control_iter: int = 100, on_step=None,
             method: str = "plain") -> QSTSResult:
    """Compile `path` in OpenDSS, import it with its load/PV shapes and run QSTS.

    `mode` "daily" or "yearly" (which shapes loads and PV follow), `steps` (default: OpenDSS's 24
    daily, 8760 yearly) of `step_s` seconds; `watch`: location ids whose |V| is kept per step.
    Raises UnsupportedElementError for settings the time series does not model (named),
    PowerFlowNotConverged if a step does not converge."""
    from market.network.opendss_import import load_dss
    from market.network.shapes import read_time_inputs

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    feeder, _ = load_dss(path)
    feeder.set_voltage_limits(v_min_pu, v_max_pu)
    return qsts(feeder, read_time_inputs(mode), mode, steps, step_s, watch, tol_pu, max_iter, max_control_iter,
                on_step=on_step, method=method)
