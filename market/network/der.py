"""Inverter-based DER as OpenDSS models them: PVSystem and Storage output, InvControl curves.

A PVSystem or Storage is solved as a `Generator` (constant P+jQ between vminpu and vmaxpu,
constant Z outside: OpenDSS's model 1, `injections.GEN`) whose kW/kvar come from its inverter:

- PVSystem panel power  P_dc = Pmpp · irradiance · TempFactor(temperature)  (P-TCurve, 1 if none);
  AC power P_ac = P_dc · Eff(P_dc/kVA) (EffCurve, 1 if none), limited to %Pmpp·Pmpp; the inverter
  is off below %cutout·kVA (once on) / %cutin·kVA (once off): P = Q = 0 (Q kept if
  varfollowinverter=no).
- Storage: discharging P = %discharge·kWrated, charging P = −%charge·kWrated (both limited to
  %kWrated·kWrated), idling P = −%idlingkW·kWrated (losses); state and SoC as the engine holds them
  (an empty store idles, a full one does not charge).
- Q: pf mode Q = P·tan(acos|pf|)·sign(pf) or kvar mode Q = setpoint, limited to kvarMax
  (generating) / kvarMaxAbs (absorbing); then the kVA limit: Q priority (default) backs off P,
  P priority (wattpriority=yes) backs off Q, pf priority (pfpriority=yes, pf mode) keeps the pf.

`inverter_output` is a port of OpenDSS's ComputeInverterPower for these settings (PminNoVars /
PminkvarLimit ramps are not modelled: the importer names them). InvControl volt-var / volt-watt
(`InvControl`) act in the outer control loop (controls.py): the monitored voltage is OpenDSS's,
the mean |V| of the DER's phase conductors to ground over its base (kV/√3 for 2-/3-phase, kV for
1-phase), and the curves are OpenDSS XYcurves (linear, extrapolated from the end segments).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


def xy_value(points: list[tuple[float, float]], x: float) -> float:
    """OpenDSS XYcurve.GetYValue: linear interpolation, extrapolated from the two end points."""
    if not points:
        return 0.0
    if len(points) == 1:
        return points[0][1]
    xs = [p[0] for p in points]
    if x < xs[0]:
        i, j = 0, 1
    else:
        for k in range(1, len(points)):
            if abs(xs[k] - x) < 1e-5:
                return points[k][1]
            if xs[k] > x:
                i, j = k - 1, k
                break
        else:
            i, j = len(points) - 2, len(points) - 1
    (x0, y0), (x1, y1) = points[i], points[j]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0) if x1 != x0 else y0


@dataclass
class Inverter:
    """The inverter of a PVSystem/Storage: its available power and its limits (kW, kvar, kVA)."""
    kind: str  # "pvsystem" | "storage"
    kva: float
    p_available_kw: float  # PV: P_dc·Eff; storage: the dispatch (discharge +, charge/idling −)
    p_limit_kw: float  # PV: %Pmpp·Pmpp; storage: %kWrated·kWrated
    p_rated_kw: float  # Pmpp or kWrated (volt-watt's PMPPPU base)
    p_dc_kw: float = 0.0  # PV panel power (volt-watt's PAVAILABLEPU base is p_dc·eff)
    eff: float = 1.0
    kvar_max: float = 0.0  # generating limit
    kvar_max_abs: float = 0.0  # absorbing limit
    var_mode: str = "kvar"  # "pf" | "kvar"
    pf: float = 1.0
    kvar_setpoint: float = 0.0
    p_priority: bool = False
    pf_priority: bool = False
    on: bool = True
    var_follow_inverter: bool = False


def inverter_output(inv: Inverter, kvar_requested: float | None = None,
                    kw_requested: float | None = None) -> tuple[float, float]:
    """(kW, kvar) at the terminals, generation positive (OpenDSS ComputeInverterPower).

    `kvar_requested` switches to kvar mode with that setpoint (InvControl volt-var);
    `kw_requested` caps P instead of the %Pmpp limit (InvControl volt-watt, as kWOut_Calc)."""
    if not inv.on:
        kw = 0.0 if inv.kind == "pvsystem" else inv.p_available_kw  # storage: idling losses
    elif kw_requested is not None:
        kw = min(inv.p_available_kw, kw_requested) if inv.p_available_kw >= 0 else max(inv.p_available_kw, -kw_requested)
    else:
        kw = max(-inv.p_limit_kw, min(inv.p_available_kw, inv.p_limit_kw))
    pf_mode = inv.var_mode == "pf" and kvar_requested is None
    if pf_mode:
        kvar = 0.0 if inv.pf == 1.0 else kw * math.sqrt(1.0 / inv.pf ** 2 - 1.0) * math.copysign(1.0, inv.pf)
        if abs(kvar) > inv.kvar_max or abs(kvar) > inv.kvar_max_abs:
            kvar = (inv.kvar_max if kvar > 0 else inv.kvar_max_abs) * _sign(kw) * _sign(inv.pf)
            if inv.pf_priority:
                kw = kvar * math.sqrt(1.0 / (1.0 - inv.pf ** 2) - 1.0) * _sign(inv.pf)
    else:
        req = inv.kvar_setpoint if kvar_requested is None else kvar_requested
        if req > 0 and req >= inv.kvar_max:
            kvar = inv.kvar_max
        elif req < 0 and -req >= inv.kvar_max_abs:
            kvar = -inv.kvar_max_abs
        else:
            kvar = req
    if not inv.on and inv.var_follow_inverter:
        kvar = 0.0
    if math.hypot(kw, kvar) > inv.kva:
        if pf_mode and inv.pf_priority:
            kw = inv.kva * abs(inv.pf)
            kvar = inv.kva * math.sqrt(1.0 - inv.pf ** 2) * _sign(inv.pf)
        elif inv.p_priority:
            if kw > inv.kva:
                kw, kvar = inv.kva, 0.0
            else:
                kvar = math.sqrt(inv.kva ** 2 - kw ** 2) * _sign(kvar)
        else:
            kw = math.sqrt(max(inv.kva ** 2 - kvar ** 2, 0.0)) * _sign(kw)
    return kw, kvar


def _sign(x: float) -> float:
    return 0.0 if x == 0 else math.copysign(1.0, x)


@dataclass
class InvControl:
    """OpenDSS InvControl in volt-var, volt-watt or both (combimode=VV_VW), static semantics.

    `vv_curve` [(v_pu, q_pu)]: Q = q_pu · headroom, headroom sqrt(kVA² − P²) ("varaval", default)
    or kvarMax/kvarMaxAbs ("varmax"); `vw_curve` [(v_pu, p_pu)]: P ≤ p_pu · base, base per
    `voltwatt_y_axis`: "pmpppu" (Pmpp/kWrated), "pavailablepu" (P_dc·Eff), "pctpmpppu"
    (%Pmpp·Pmpp), "kvaratingpu" (kVA). `ders`: the controlled elements ("pvsystem.pv1")."""
    name: str
    ders: list[str]
    vv_curve: list[tuple[float, float]] | None = None
    vw_curve: list[tuple[float, float]] | None = None
    ref_reactive_power: str = "varaval"
    voltwatt_y_axis: str = "pmpppu"
    enabled: bool = True
    targets: dict = field(default_factory=dict, repr=False)  # last (kW, kvar) per DER, for the loop


def q_headroom(inv: Inverter, kw: float, ref: str, generating: bool) -> float:
    """InvControl's reactive-power base (kvar) at present output kW (Calc_QHeadRoom)."""
    if ref == "varaval":
        head = math.sqrt(inv.kva ** 2 - kw ** 2) if abs(kw) < inv.kva else 0.0
        if head != 0.0:
            return head
    return inv.kvar_max if generating else inv.kvar_max_abs


def p_base(inv: Inverter, axis: str) -> float:
    """InvControl's volt-watt base (kW) per voltwatt_y_axis (Calc_PBase)."""
    if axis == "pavailablepu":
        return inv.p_dc_kw * inv.eff if inv.kind == "pvsystem" else abs(inv.p_available_kw)
    if axis == "pmpppu":
        return inv.p_rated_kw
    if axis == "pctpmpppu":
        return inv.p_limit_kw
    return inv.kva


def control_target(ctrl: InvControl, inv: Inverter, v_pu: float, kw_now: float) -> tuple[float, float]:
    """The (kW, kvar) the control wants at monitored voltage `v_pu`, from the present kW (its
    headroom), through the inverter's limits: the static fixed point of OpenDSS's iteration."""
    kw_req = None
    if ctrl.vw_curve:
        p_pu = xy_value(ctrl.vw_curve, v_pu)
        kw_req = min(max(p_pu, 0.0) * p_base(inv, ctrl.voltwatt_y_axis), inv.p_limit_kw)
    kvar_req = None
    if ctrl.vv_curve:
        q_pu = xy_value(ctrl.vv_curve, v_pu)
        kvar_req = q_pu * q_headroom(inv, kw_now, ctrl.ref_reactive_power, q_pu >= 0)
    return inverter_output(inv, kvar_req, kw_req)
