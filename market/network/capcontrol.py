"""Capacitor control (OpenDSS CapControl.Sample / DoPendingAction), one action per control iteration.

Measured at the monitored element's terminal, by kind:
- 'voltage': V = |V_pt| / PT (delta bank, fixed phase: |V_pt − V_next| / PT; avg/max/min over the
  element's phases); close below ON, open above OFF;
- 'kvar': Q = Im(S_terminal) / 1000 (kvar, no PT/CT scaling, as OpenDSS); close above ON, open below OFF;
- 'current': I = |I_ct| / CT (fixed phase: conductor `ct_phase` of terminal 1, as OpenDSS reads it;
  avg/max/min over the bank's phases at the monitored terminal); close above ON, open below OFF;
- 'pf': PF in OpenDSS's 0…2 range (|P|/|S|, 2 − that when Q < 0, i.e. leading), settings in −1…1
  mapped to 0…2 (negative → 2 + value); close when PF < ON and Q > pct_min_kvar % of the bank (the
  first step) or Q > half a step (further steps), open when PF > OFF;
- 'time': hour of day h (OpenDSS NormalizeToTOD of `feeder.time_h`); ON < OFF: closed in [ON, OFF),
  open otherwise; OFF < ON (over midnight): close in [ON, 24), open in [OFF, ON).
Voltage override (not for 'voltage'): close below vmin, open above vmax, before the kind's test.
A closed bank with steps left closes one more step when the close test holds; opening removes the
last step in service (OpenDSS AddStep / SubtractStep).
"""
from __future__ import annotations

import numpy as np

from market.network.model import Capacitor, CapControl, Feeder

EPSILON_H = 1e-12


def hour_of_day(time_h: float) -> float:
    """OpenDSS NormalizeToTOD: hours 0 < h ≤ 24 (hour 24 stays 24, 25 is 1)."""
    h = int(np.floor(time_h + 1e-9))
    sec_h = time_h - h
    if h > 24:
        h -= ((h - 1) // 24) * 24
    out = h + sec_h
    return out - 24.0 if out - 24.0 > EPSILON_H else out


def _select(values: np.ndarray, select: str, phase: int) -> float:
    if select == "avg":
        return float(np.mean(values))
    if select == "max":
        return float(np.max(values))
    if select == "min":
        return float(np.min(values))
    return float(values[phase - 1])


def control_voltage(res, blk, lo: int, n_terminal: int, cc: CapControl, cap: Capacitor) -> float:
    """OpenDSS GetControlVoltage on the monitored terminal's conductor voltages (volts / PT)."""
    v = np.array([res.v[i] if i >= 0 else 0.0j for i in blk.index[lo:lo + n_terminal]])
    if cc.pt_select != "phase":
        n = cc.element_phases or n_terminal
        return _select(np.abs(v[:n]), cc.pt_select, 1) / cc.pt_ratio
    if cap.conn == "delta":
        nxt = cc.phase % len(cap.nodes)  # NextDeltaPhase over the bank's phases (0-based next)
        return abs(v[cc.phase - 1] - v[nxt]) / cc.pt_ratio
    return abs(v[cc.phase - 1]) / cc.pt_ratio


def control_current(cur: np.ndarray, lo: int, cc: CapControl, cap: Capacitor) -> float:
    """OpenDSS GetControlCurrent: a fixed phase reads terminal 1's conductor, avg/max/min the
    bank's phase count from the monitored terminal's first conductor."""
    if cc.ct_select == "phase":
        return abs(cur[cc.ct_phase - 1]) / cc.ct_ratio
    return _select(np.abs(cur[lo:lo + len(cap.nodes)]), cc.ct_select, 1) / cc.ct_ratio


def _pf_range2(s: complex) -> float:
    mag = abs(s)
    pf = abs(s.real) / mag if mag != 0.0 else 1.0
    return 2.0 - pf if s.imag < 0.0 else pf


def _pf_setting(value: float) -> float:
    return 2.0 + value if value < 0.0 else value


def _tests(feeder: Feeder, cc: CapControl, cap: Capacitor, closed: bool, measure) -> tuple[bool, bool]:
    """(close test, open test) of the control's kind; `measure(name)` reads a quantity lazily."""
    on, off = cc.on_setting, cc.off_setting
    if cc.kind == "voltage":
        v = measure("v")
        return v < on, v > off
    if cc.kind == "kvar":
        q = measure("s").imag / 1000.0
        return q > on, q < off
    if cc.kind == "current":
        i = measure("i")
        return i > on, i < off
    if cc.kind == "pf":
        s = measure("s")
        pf, q_kvar = _pf_range2(s), s.imag / 1000.0
        total = sum(cap.kvar_steps)
        need = total * cc.pct_min_kvar / 100.0 if not closed else total / len(cap.kvar_steps) * 0.5
        return pf < _pf_setting(on) and q_kvar > need, pf > _pf_setting(off)
    h = hour_of_day(feeder.time_h)  # "time"
    if off > on:
        inside = on <= h < off
        return inside, not inside
    return on <= h < 24.0, off <= h < on


def cap_decision(feeder: Feeder, cc: CapControl, cap: Capacitor, measure) -> bool | None:
    """True: close a step, False: open one, None: nothing (OpenDSS CapControl.Sample)."""
    closed = any(cap.states)
    if cc.volt_override and cc.kind != "voltage":
        v = measure("v")
        if not closed and v < cc.vmin_v:
            return True
        if closed and v > cc.vmax_v:
            return False
    close, open_ = _tests(feeder, cc, cap, closed, measure)
    if not closed:
        return True if close else None
    if open_:
        return False
    if close and 0 in cap.states:
        return True
    return None


def switch_step(cap: Capacitor, close: bool) -> None:
    """AddStep: the first open step closes; SubtractStep: the last closed step opens."""
    states = cap.states
    if close:
        if 0 in states:
            states[states.index(0)] = 1
    else:
        for k in range(len(states) - 1, -1, -1):
            if states[k]:
                states[k] = 0
                break
