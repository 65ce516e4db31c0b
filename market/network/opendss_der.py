"""PVSystem, Storage and InvControl elements read from the OpenDSS engine (see der.py for the models).

Each PVSystem/Storage becomes a `Generator` (dss_class "pvsystem"/"storage") with a der.Inverter
built from the engine's parameters: PVSystem Pmpp, irradiance, temperature (P-TCurve), EffCurve,
%Pmpp, kVA, kvarMax/kvarMaxAbs, pf or kvar, priorities, %cutin/%cutout (the inverter's on/off
state as the engine holds it); Storage kWrated, state (charging/discharging/idling and the dispatch as the
engine set them from kW/%stored/%reserve/%cutin/%cutout), %charge/%discharge, %kWrated, %idlingkW, the same var settings.
The output our inverter model gives is checked against the engine's own nominal output
(PVSystems.kW/kvar; a Storage's kW and kvar): any difference means a setting we do not model,
and the element is named as unsupported instead of being solved differently from OpenDSS.
Settings named, never dropped: model ≠ 1, limitcurrent, balanced, %PminNoVars/%PminkvarMax,
user models; InvControl modes other than VOLTVAR/VOLTWATT/VV_VW, hysteresis, rate-of-change
limits, monitored buses other than the DER's own terminal, voltage reference other than rated.
"""
from __future__ import annotations

from market.network.der import InvControl, Inverter, inverter_output, xy_value
from market.network.model import Generator
from market.network.opendss_import import _activate, _dss, _query, _terminals

_TOL_KW = 1e-6  # our inverter model vs the engine's nominal output (kW, kvar; relative to kVA)


def _q(element: str, prop: str) -> str:
    return _query(f"{element}.{prop}")


def _f(element: str, prop: str) -> float:
    return float(_q(element, prop))


def _yes(element: str, prop: str) -> bool:
    return _q(element, prop).strip().lower().startswith(("y", "t"))


def _curve(name: str) -> list[tuple[float, float]] | None:
    name = name.strip().strip('"').lower()
    if not name or name == "none":
        return None
    dss = _dss()
    dss.XYCurves.Name(name)
    if dss.XYCurves.Name().lower() != name:
        return None
    xs = [float(x) * dss.XYCurves.XScale() + dss.XYCurves.XShift() for x in dss.XYCurves.XArray()]
    ys = [float(y) * dss.XYCurves.YScale() + dss.XYCurves.YShift() for y in dss.XYCurves.YArray()]
    return list(zip(xs, ys))


def _common_unsupported(el: str) -> list[str]:
    out = []
    if int(_f(el, "model")) != 1:
        out.append(f"{el} (model={_q(el, 'model')}; only model=1, constant P+jQ, is supported)")
    for prop in ("limitcurrent", "balanced"):
        if _yes(el, prop):
            out.append(f"{el} ({prop}=yes not supported)")
    for prop in ("%pminnovars", "%pminkvarmax"):
        if _f(el, prop) > 0:
            out.append(f"{el} ({prop} not supported)")
    if _q(el, "usermodel"):
        out.append(f"{el} (user model not supported)")
    return out


def _var_settings(el: str, kw: float, kvar_engine: float) -> dict:
    pf = _f(el, "pf")
    kw_pf = kw * ((1.0 / pf ** 2 - 1.0) ** 0.5) * (1 if pf > 0 else -1) if pf != 1.0 else 0.0
    pf_mode = pf != 1.0 and abs(kw_pf - kvar_engine) <= _TOL_KW * max(1.0, abs(kw))
    return {"kvar_max": _f(el, "kvarmax"), "kvar_max_abs": _f(el, "kvarmaxabs"),
            "var_mode": "pf" if pf_mode else "kvar", "pf": pf, "kvar_setpoint": kvar_engine,
            "p_priority": _yes(el, "wattpriority"), "pf_priority": _yes(el, "pfpriority"),
            "var_follow_inverter": _yes(el, "varfollowinverter")}


def _generator(el: str, kind: str, kw: float, kvar: float, inv: Inverter) -> Generator:
    dss = _dss()
    (bus, nodes), = _terminals()[:1]
    conn = _q(el, "conn").lower()
    return Generator(el.split(".", 1)[1].lower(), bus, nodes, int(dss.CktElement.NumPhases()), kw, kvar,
                     _f(el, "kv"), "delta" if conn.startswith(("d", "l")) else "wye",
                     _f(el, "vminpu"), _f(el, "vmaxpu"), dss_class=kind, inverter=inv)


def _check(el: str, inv: Inverter, kw: float, kvar: float, unsupported: list[str]) -> bool:
    mine = inverter_output(inv)
    tol = _TOL_KW * max(1.0, inv.kva)
    if abs(mine[0] - kw) > tol or abs(mine[1] - kvar) > tol:
        unsupported.append(f"{el} (inverter settings not modelled: OpenDSS gives {kw:.6g} kW {kvar:.6g} kvar, "
                           f"the model {mine[0]:.6g} kW {mine[1]:.6g} kvar)")
        return False
    return True


def pvsystems(unsupported: list[str]) -> list[Generator]:
    dss = _dss()
    out = []
    for name in dss.PVsystems.AllNames():
        if name.lower() == "none":
            continue
        el = f"pvsystem.{name.lower()}"
        _activate(el)
        if not dss.CktElement.Enabled():
            continue
        bad = _common_unsupported(el)
        if bad:
            unsupported += bad
            continue
        dss.PVsystems.Name(name)
        kw, kvar = float(dss.PVsystems.kW()), float(dss.PVsystems.kvar())
        pmpp, irr = _f(el, "pmpp"), _f(el, "irradiance")
        temp_curve, eff_curve = _curve(_q(el, "p-tcurve")), _curve(_q(el, "effcurve"))
        kva = _f(el, "kva")
        p_dc = pmpp * irr * (xy_value(temp_curve, _f(el, "temperature")) if temp_curve else 1.0)
        eff = xy_value(eff_curve, p_dc / kva) if eff_curve else 1.0
        p_limit = pmpp * _f(el, "%pmpp") / 100.0
        inv = Inverter("pvsystem", kva, p_dc * eff, p_limit, pmpp, p_dc, eff, **_var_settings(el, kw, kvar))
        inv.on = not (kw == 0.0 and p_dc * eff > 0.0)
        if _check(el, inv, kw, kvar, unsupported):
            out.append(_generator(el, "pvsystem", kw, kvar, inv))
    return out


def storages(unsupported: list[str]) -> list[Generator]:
    dss = _dss()
    out = []
    for name in dss.Storages.AllNames():
        if name.lower() == "none":
            continue
        el = f"storage.{name.lower()}"
        _activate(el)
        if not dss.CktElement.Enabled():
            continue
        bad = _common_unsupported(el)
        if _q(el, "dispmode").lower() not in ("default", "external"):
            bad.append(f"{el} (dispmode={_q(el, 'dispmode')}; only default/external dispatch is supported)")
        if bad:
            unsupported += bad
            continue
        kw_rated = _f(el, "kwrated")
        p_dispatch, kvar = _f(el, "kw"), _f(el, "kvar")
        inv = Inverter("storage", _f(el, "kva"), p_dispatch, kw_rated * _f(el, "%kwrated") / 100.0, kw_rated,
                       **_var_settings(el, p_dispatch, kvar))
        kw = inverter_output(inv)[0]  # the engine reports the dispatch, not the kVA-limited output
        if _check(el, inv, kw, kvar, unsupported):
            out.append(_generator(el, "storage", kw, kvar, inv))
    return out


def inv_controls(unsupported: list[str], ders: list[Generator], elements: list[str] | None = None) -> list[InvControl]:
    """InvControls in VOLTVAR, VOLTWATT or combimode VV_VW (an empty DER list = every PV/Storage);
    `elements`: Circuit.AllElementNames() if the caller has it."""
    dss = _dss()
    out = []
    names = {f"{g.dss_class}.{g.name}" for g in ders if g.inverter is not None}
    for full in dss.Circuit.AllElementNames() if elements is None else elements:
        if full.split(".")[0].lower() != "invcontrol":
            continue
        el = full.lower()
        _activate(el)
        if not dss.CktElement.Enabled():
            continue
        mode, combi = _q(el, "mode").lower(), _q(el, "combimode").lower()
        why = []
        if combi not in ("", "none", "vv_vw"):
            why.append(f"combimode={combi}")
        elif combi != "vv_vw" and mode not in ("voltvar", "voltwatt"):
            why.append(f"mode={mode}")
        if _f(el, "hysteresis_offset") != 0:
            why.append("hysteresis")
        if _q(el, "voltage_curvex_ref").lower() != "rated":
            why.append(f"voltage_curvex_ref={_q(el, 'voltage_curvex_ref')}")
        if _q(el, "monbus").strip("[] "):
            why.append("monitored buses")
        if _q(el, "rateofchangemode").lower() not in ("inactive", ""):
            why.append(f"rateofchangemode={_q(el, 'rateofchangemode')}")
        targets = [t.strip().lower() for t in _q(el, "derlist").strip("[]").replace('"', "").split(",") if t.strip()]
        targets = targets or sorted(names)
        missing = [t for t in targets if t not in names]
        if missing:
            why.append(f"controls {', '.join(missing)} (not imported)")
        if why:
            unsupported.append(f"{el} ({'; '.join(why)} not supported)")
            continue
        vv = _curve(_q(el, "vvc_curve1")) if combi == "vv_vw" or mode == "voltvar" else None
        vw = _curve(_q(el, "voltwatt_curve")) if combi == "vv_vw" or mode == "voltwatt" else None
        out.append(InvControl(el.split(".", 1)[1], targets, vv, vw, _q(el, "refreactivepower").lower(),
                              _q(el, "voltwattyaxis").lower()))
    return out
