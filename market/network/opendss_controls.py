"""RegControl and CapControl from the OpenDSS engine (moved out of opendss_import.py).

RegControl: fixed PT phase or `ptphase=max|min` (the phase of highest/lowest winding |V|, whose
current then feeds the line-drop compensation), local line-drop compensation, or a remote
regulated bus (`bus=`: that bus node's voltage over `remoteptratio`, no LDC, as OpenDSS).
CapControl: voltage, kvar, current, power-factor and time types, PT/CT phase, avg/max/min,
voltage override. What the control loop does not model is named (UnsupportedElementError), never
dropped: reversible/cogen regulators, vlimit, Beckwith LDC_Z, tapwinding ≠ winding, inverse-time
delays, a remote bus with a delta winding or a fixed ptphase ≠ 1; capacitor controls with a
voltage-override bus (`vbus`) or a user model.
"""
from __future__ import annotations

from market.network.model import CapControl, Regulator
from market.network.dss_batch import ClassBatch
from market.network.opendss_import import _activate, _dss, _query

CAP_KINDS = {0: "current", 1: "voltage", 2: "kvar", 3: "time", 4: "pf"}
SELECT = {"avg": "avg", "max": "max", "min": "min"}


def _phase(text: str, where: str, allowed: tuple[str, ...], unsupported: list[str]) -> tuple[int, str]:
    """(phase, select) of an OpenDSS ptphase/ctphase value: a number → (n, "phase"), avg/max/min →
    (1, that); anything else is named."""
    t = text.strip().lower()
    if t.isdigit():
        return int(t), "phase"
    if t in allowed:
        return 1, SELECT[t]
    unsupported.append(f"{where} (phase selection {text!r}; supported: a phase number or {', '.join(allowed)})")
    return 1, "phase"


def _yes(text: str) -> bool:
    return text.strip().lower().startswith(("y", "t"))


def regulators(unsupported: list[str]) -> list[Regulator]:
    """All regcontrols, disabled ones too (held taps are still reported)."""
    dss = _dss()
    out = []
    checks = (("reversible", _yes), ("cogen", _yes), ("inversetime", _yes), ("vlimit", lambda t: float(t) > 0),
              ("ldc_z", lambda t: float(t) > 0))
    with ClassBatch("regcontrol") as batch:  # the text properties of every regcontrol, one call each
        props = {p: dict(zip(batch.names, batch.strings(p))) for p in ("ptphase", "bus", *(c for c, _ in checks))}
    for name in dss.RegControls.AllNames():
        if name.lower() == "none":
            continue
        dss.RegControls.Name(name)
        full = f"regcontrol.{name}"
        _activate(full)
        prop = {p: values[name.lower()].strip() for p, values in props.items()}
        pt_phase, pt_select = _phase(prop["ptphase"], full, ("max", "min"), unsupported)
        winding = int(dss.RegControls.Winding())
        tr = dss.RegControls.Transformer().lower()
        for key, bad in checks:
            value = prop[key]
            if value and bad(value):
                unsupported.append(f"{full} ({key}={value} is not modelled)")
        if int(dss.RegControls.TapWinding()) != winding:
            unsupported.append(f"{full} (tapwinding {dss.RegControls.TapWinding()} differs from winding {winding})")
        reg = Regulator(name.lower(), tr, winding, float(dss.RegControls.ForwardVreg()),
                        float(dss.RegControls.ForwardBand()), float(dss.RegControls.PTRatio()),
                        float(dss.RegControls.CTPrimary()), float(dss.RegControls.ForwardR()),
                        float(dss.RegControls.ForwardX()), pt_phase, int(dss.RegControls.MaxTapChange()),
                        bool(dss.CktElement.Enabled()), float(dss.RegControls.Delay()), pt_select)
        if prop["bus"]:
            _remote_bus(reg, full, tr, winding, unsupported)
        out.append(reg)
    return out


def _remote_bus(reg: Regulator, full: str, tr: str, winding: int, unsupported: list[str]) -> None:
    """OpenDSS samples only conductor 1 of the regulated bus (the control has one phase there)."""
    dss = _dss()
    bus = dss.CktElement.BusNames()[0].split(".")[0].lower()
    node = int(dss.CktElement.NodeOrder()[0])
    reg.regulated_bus, reg.regulated_node = bus, node
    reg.remote_pt_ratio = float(_query(f"{full}.remoteptratio"))
    if reg.pt_select == "phase" and reg.pt_phase != 1:
        unsupported.append(f"{full} (remote bus with ptphase={reg.pt_phase}: OpenDSS samples one phase there)")
    if node == 0:
        unsupported.append(f"{full} (remote bus conductor is ground)")
    _activate(f"transformer.{tr}")
    dss.Transformers.Wdg(winding)
    if dss.Transformers.IsDelta():
        unsupported.append(f"{full} (remote bus on a delta winding)")
    _activate(full)


def cap_controls(unsupported: list[str]) -> list[CapControl]:
    dss = _dss()
    out = []
    ok = dss.CapControls.First()
    while ok:
        name = dss.CapControls.Name()
        full = f"capcontrol.{name}"
        _activate(full)
        mode = int(dss.CapControls.Mode())
        if mode not in CAP_KINDS:
            unsupported.append(f"{full} (type code {mode}: user models are not supported)")
        elif _query(f"{full}.vbus"):
            unsupported.append(f"{full} (voltage-override bus vbus= is not modelled)")
        else:
            phase, pt_select = _phase(_query(f"{full}.ptphase"), full, ("avg", "max", "min"), unsupported)
            ct_phase, ct_select = _phase(_query(f"{full}.ctphase"), full, ("avg", "max", "min"), unsupported)
            element = dss.CapControls.MonitoredObj().lower()
            cc = CapControl(name, dss.CapControls.Capacitor().lower(), CAP_KINDS[mode], element,
                            int(dss.CapControls.MonitoredTerm()), float(dss.CapControls.ONSetting()),
                            float(dss.CapControls.OFFSetting()), float(dss.CapControls.PTRatio()),
                            float(dss.CapControls.CTRatio()), phase, bool(dss.CapControls.UseVoltOverride()),
                            float(dss.CapControls.Vmin()), float(dss.CapControls.Vmax()),
                            bool(dss.CktElement.Enabled()), float(dss.CapControls.Delay()),
                            float(dss.CapControls.DelayOff()), pt_select, ct_phase, ct_select,
                            float(_query(f"{full}.pctminkvar")))
            _activate(element)
            cc.element_phases = int(dss.CktElement.NumPhases())
            out.append(cc)
        ok = dss.CapControls.Next()
    return out
