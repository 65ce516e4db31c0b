"""Outer control loop: regulator taps, capacitor switching and inverter Q(V), OpenDSS static style.

Each control iteration solves the power flow, samples every control, and executes the pending
actions with the *shortest delay* (OpenDSS `DoNearestActions` in static control mode); the loop
ends when no control wants to act. Tap and capacitor changes rebuild and refactorize the Ybus;
Q(V) updates only change injections.

Regulator (OpenDSS RegControl): V_c = V_winding[pt_phase]/PT + (R + jX)·I_in/CT_primary
(I_in flows into the regulated winding's terminal, so this is V − Z·I_load; `pt_select` max/min:
the phase of highest/lowest |V_winding|, whose current then feeds the LDC; a remote regulated bus:
V_c = V_bus·node / remote PT, no LDC). If
|vreg − |V_c|| > band/2: boost = (vreg − |V_c|)·PT/Vbase_winding (pu), pending =
round(boost/step)·step, applied as max(1, trunc(0.7·|pending|/step)) steps (≤ max_tap_change),
clamped to [min_tap, max_tap]; step = (max_tap − min_tap)/num_taps.

Capacitor (OpenDSS CapControl): voltage, kvar, current, power-factor and time types, one step per
action, voltage override (`capcontrol.py`).

Q(V): a generator with `qv_curve` [(v_pu, q_kvar), …] gets kvar = interp(|V| pu averaged over its
phases), relaxed by ½ per iteration until the change is below 0.01 kvar.

InvControl (der.InvControl, volt-var / volt-watt / both): each controlled PVSystem/Storage moves
to der.control_target at its monitored voltage (OpenDSS's: mean |V| of its phase conductors to
ground over its base), relaxed by ½ per iteration until kW and kvar change by less than
INVERTER_TOL (the static fixed point; OpenDSS approaches it within its varchangetolerance).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.network.capcontrol import cap_decision, control_current, control_voltage, switch_step
from market.network.der import control_target
from market.network.errors import PowerFlowNotConverged
from market.network.model import CapControl, Feeder, Regulator, Transformer
from market.network.primitives import _winding_vbase
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import Network, build_network


@dataclass
class Action:
    delay_s: float
    kind: str  # "tap" | "cap" | "qv" | "inverter"
    apply: object  # callable() -> None
    element: tuple[str, str] | None = None  # (kind, name) whose Yprim the action changes


def block_slice(res: PowerFlowResult, kind: str, name: str) -> tuple[object, slice]:
    """The element's block and its rows in the stacked conductors (a dict cached on the network)."""
    table = res.network.reduced_cache.get("block_slices")
    if table is None:
        table, r0 = {}, 0
        for blk in res.network.blocks:
            m = len(blk.index)
            table[(blk.kind, blk.name)] = (blk, slice(r0, r0 + m))
            r0 += m
        res.network.reduced_cache["block_slices"] = table
    try:
        return table[(kind, name)]
    except KeyError:
        raise KeyError(f"{kind}.{name}") from None


def _currents(res: PowerFlowResult) -> np.ndarray:
    """res.terminal_currents(), computed once per result (every regulator's LDC reads it)."""
    cur = getattr(res, "_terminal_currents", None)
    if cur is None:
        cur = res._terminal_currents = res.terminal_currents()
    return cur


def _cond_voltage(res: PowerFlowResult, blk, j: int) -> complex:
    idx = blk.index[j]
    return complex(res.v[idx]) if idx >= 0 else 0.0j


def winding_voltage(res: PowerFlowResult, tr: Transformer, w: int, phase: int) -> complex:
    """Voltage across the coil of winding `w` (0-based) for `phase` (1-based), volts."""
    blk, _ = block_slice(res, "transformer", tr.name)
    nc = tr.phases + 1
    base = w * nc
    i = phase - 1
    if tr.phases == 1:
        return _cond_voltage(res, blk, base) - _cond_voltage(res, blk, base + 1)
    if tr.windings[w].conn == "wye":
        return _cond_voltage(res, blk, base + i) - _cond_voltage(res, blk, base + nc - 1)
    step = -1 if tr.windings[0].conn == "delta" else 1
    nxt = (i + step) % tr.phases if tr.phases > 2 else (i + step if i + step >= 0 else 2)
    return _cond_voltage(res, blk, base + i) - _cond_voltage(res, blk, base + nxt)


def _control_voltage(res: PowerFlowResult, tr: Transformer, reg: Regulator) -> tuple[complex, int]:
    """(V_c before LDC, controlled phase): the regulated bus node / remote PT, or the winding
    voltage of `pt_phase` — or of the phase of highest/lowest |V| (`pt_select` max/min) — / PT."""
    if reg.regulated_bus is not None:
        return complex(res.v[res.network.index[(reg.regulated_bus, reg.regulated_node)]]) / reg.remote_pt_ratio, 1
    w = reg.winding - 1
    if reg.pt_select == "phase":
        return winding_voltage(res, tr, w, reg.pt_phase) / reg.pt_ratio, reg.pt_phase
    v = [winding_voltage(res, tr, w, k) for k in range(1, tr.phases + 1)]
    mags = np.abs(v)
    k = int(np.argmax(mags) if reg.pt_select == "max" else np.argmin(mags))  # first of equals, as OpenDSS
    return v[k] / reg.pt_ratio, k + 1


def _regulator_action(feeder: Feeder, res: PowerFlowResult, reg: Regulator) -> Action | None:
    tr = feeder.transformer(reg.transformer)
    w = reg.winding - 1
    wd = tr.windings[w]
    blk, sl = block_slice(res, "transformer", tr.name)
    v_c, phase = _control_voltage(res, tr, reg)
    if reg.regulated_bus is None and (reg.r_ldc_v or reg.x_ldc_v):  # no LDC with a regulated bus (OpenDSS)
        i_in = _currents(res)[sl][w * (tr.phases + 1) + phase - 1]
        v_c += complex(reg.r_ldc_v, reg.x_ldc_v) * i_in / reg.ct_primary_a
    v_act = abs(v_c)
    if abs(reg.vreg_v - v_act) <= reg.band_v / 2.0:
        return None
    step = (wd.max_tap_pu - wd.min_tap_pu) / wd.num_taps
    boost = (reg.vreg_v - v_act) * reg.pt_ratio / _winding_vbase(tr, w)
    pending = round(boost / step) * step
    if pending == 0.0:
        return None
    if (pending > 0 and wd.tap_pu >= wd.max_tap_pu) or (pending < 0 and wd.tap_pu <= wd.min_tap_pu):
        return None
    n = min(max(int(0.7 * abs(pending) / step), 1), reg.max_tap_change)

    def apply() -> None:
        wd.tap_pu = float(np.clip(wd.tap_pu + np.sign(pending) * n * step, wd.min_tap_pu, wd.max_tap_pu))

    return Action(reg.delay_s, "tap", apply, ("transformer", tr.name))


def _cap_action(feeder: Feeder, res: PowerFlowResult, cc: CapControl) -> Action | None:
    """One capacitor control's pending action (capcontrol.py: the kinds and their tests)."""
    cap = next(c for c in feeder.capacitors if c.name == cc.capacitor)
    kind, name = cc.element.split(".", 1)
    blk, sl = block_slice(res, kind, name)
    n1 = blk.n_terminal1
    lo = 0 if cc.terminal == 1 else n1 * (cc.terminal - 1)
    cache: dict[str, object] = {}

    def measure(what: str):
        if what not in cache:
            if what == "v":
                cache[what] = control_voltage(res, blk, lo, n1, cc, cap)
            elif what == "s":
                cache[what] = complex(res.element_powers_va()[sl][lo:lo + n1].sum())
            else:
                cache[what] = control_current(_currents(res)[sl], lo, cc, cap)
        return cache[what]

    want = cap_decision(feeder, cc, cap, measure)
    if want is None:
        return None

    def apply() -> None:
        switch_step(cap, want)

    return Action(cc.delay_s if want else cc.delay_off_s, "cap", apply, ("capacitor", cap.name))


def _qv_actions(feeder: Feeder, res: PowerFlowResult) -> list[Action]:
    out = []
    for g in feeder.generators:
        if not g.qv_curve:
            continue
        idx = [res.network.index[(g.bus, k)] for k in g.nodes[:g.phases] if k]
        v_pu = float(np.mean(res.v_pu[idx]))
        pts = np.array(sorted(g.qv_curve))
        target = float(np.interp(v_pu, pts[:, 0], pts[:, 1]))
        if abs(target - g.kvar) > 0.01:
            def apply(g=g, target=target) -> None:
                g.kvar = g.kvar + 0.5 * (target - g.kvar)
            out.append(Action(0.0, "qv", apply))
    return out


INVERTER_TOL = 1e-5  # kW / kvar: InvControl targets closer than this are reached


def der_voltage_pu(res: PowerFlowResult, g) -> float:
    """OpenDSS InvControl's monitored voltage of DER `g`: mean |V| of its phase conductors to
    ground (node 0 counts as 0 V), over its base kV/√3 (2-/3-phase) or kV (1-phase)."""
    base = g.kv * 1000.0 / (3 ** 0.5 if g.phases in (2, 3) else 1.0)
    mags = [abs(res.v[res.network.index[(g.bus, k)]]) if k else 0.0 for k in g.nodes[:g.phases]]
    return float(np.mean(mags)) / base


def _inverter_actions(feeder: Feeder, res: PowerFlowResult) -> list[Action]:
    out = []
    ders = {f"{g.dss_class}.{g.name}": g for g in feeder.generators if g.inverter is not None}
    for ctrl in feeder.inv_controls:
        if not ctrl.enabled:
            continue
        for full in ctrl.ders:
            g = ders[full]
            kw, kvar = control_target(ctrl, g.inverter, der_voltage_pu(res, g), g.kw)
            if abs(kw - g.kw) > INVERTER_TOL or abs(kvar - g.kvar) > INVERTER_TOL:
                def apply(g=g, kw=kw, kvar=kvar) -> None:
                    g.kw, g.kvar = g.kw + 0.5 * (kw - g.kw), g.kvar + 0.5 * (kvar - g.kvar)
                out.append(Action(0.0, "inverter", apply))
    return out


def solve_with_controls(feeder: Feeder, max_control_iter: int = 100, tol_pu: float = 1e-9,
                        max_iter: int = 200, net: Network | None = None) -> PowerFlowResult:
    """Power flow with regulators, capacitor controls and Q(V) acting until nothing changes;
    `net` = the feeder's network just built (build_network(feeder)), if the caller has it."""
    net = build_network(feeder) if net is None else net
    res = solve(net, tol_pu, max_iter, atoms=net.atoms)
    for it in range(1, max_control_iter + 1):
        actions = [a for r in feeder.regulators if r.enabled for a in [_regulator_action(feeder, res, r)] if a]
        actions += [a for c in feeder.cap_controls if c.enabled for a in [_cap_action(feeder, res, c)] if a]
        actions += _qv_actions(feeder, res) + _inverter_actions(feeder, res)
        if not actions:
            res.control_iterations = it - 1
            res.taps = regulator_taps(feeder)
            return res
        first = min(a.delay_s for a in actions)
        todo = [a for a in actions if a.delay_s == first]
        for a in todo:
            a.apply()
        changed = {a.element for a in todo if a.element is not None}
        if changed:
            net = build_network(feeder, previous=net, changed=changed)
        res = solve(net, tol_pu, max_iter, v0=res.v)
    raise PowerFlowNotConverged(f"controls on {feeder.name!r} still acting after {max_control_iter} iterations",
                                max_control_iter, float("inf"))


def regulator_taps(feeder: Feeder) -> dict[str, float]:
    """Tap (pu) of each regulator's controlled winding, keyed by regulator name."""
    return {r.name: feeder.transformer(r.transformer).windings[r.winding - 1].tap_pu for r in feeder.regulators}


def solve_feeder(feeder: Feeder, **kw) -> PowerFlowResult:
    """Solve honouring `feeder.controls_on` (False: taps and capacitor states held)."""
    if feeder.controls_on:
        return solve_with_controls(feeder, **kw)
    net = build_network(feeder)
    res = solve(net, kw.get("tol_pu", 1e-9), kw.get("max_iter", 200), atoms=net.atoms)
    res.taps = regulator_taps(feeder)
    return res
