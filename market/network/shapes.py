"""Load shapes and the time-series inputs of a feeder, read from the OpenDSS engine.

A `LoadShape` holds what the engine holds after compile (`LoadShape.PMult/QMult/TimeArray`,
`HrInterval`, `UseActual`); `mult_at_hour` is OpenDSS's `TLoadShapeObj.GetMultAtHour`:

- fixed interval (`interval_h > 0`): point i = round(hr / interval) (Pascal's round: half to
  even, as Python's), wrapped modulo the number of points, i = 0 → the last point; no
  interpolation (hour 12.25 on an hourly shape is point 12);
- variable interval (`interval_h == 0`, hours given): linear interpolation between the two
  points around `hr` (a point within 1e-5 h is used as is), `hr` wrapped modulo the last hour;
- the reactive multiplier is QMult when given, else the same as PMult; a shape without points
  is 1.

`TimeInputs` (from `read_time_inputs`) lists per load its base kW/kvar (before LoadMult), its
status (variable/fixed/exempt) and its daily/yearly shape names, and per PVSystem its irradiance,
Pmpp, shapes and cut-in/cut-out, so that `timeseries.py` sets every load and PV per step as the
engine's `SetNominalLoad` / `SetNominalDEROutput` do (`load_kw_kvar`, `pv_panel_kw`).
Settings that would need more than that are named in `TimeInputs.unsupported`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUS_VARIABLE, STATUS_FIXED, STATUS_EXEMPT = 0, 1, 2


@dataclass
class LoadShape:
    name: str
    p: np.ndarray  # PMult
    q: np.ndarray | None = None  # QMult (None: same as PMult)
    interval_h: float = 1.0  # 0: variable interval, `hours` given
    hours: np.ndarray | None = None
    use_actual: bool = False


def mult_at_hour(shape: LoadShape | None, hr: float) -> tuple[float, float]:
    """(P multiplier, Q multiplier) at hour `hr` (OpenDSS GetMultAtHour); no shape → (1, 1)."""
    if shape is None or len(shape.p) == 0:
        return 1.0, 1.0
    n = len(shape.p)

    def result(i: int) -> tuple[float, float]:
        pm = float(shape.p[i])
        return pm, (float(shape.q[i]) if shape.q is not None else (0.0 if shape.use_actual else pm))

    if n == 1:
        return result(0)
    if shape.interval_h > 0:
        i = round(hr / shape.interval_h)
        if i > n:
            i = i % n
        if i == 0:
            i = n
        return result(i - 1)
    h = shape.hours
    if hr > h[-1]:
        hr = hr - int(hr / h[-1]) * h[-1]
    for i in range(n):
        if abs(h[i] - hr) < 1e-5:
            return result(i)
        if h[i] > hr:
            if i == 0:  # OpenDSS starts its search at the last point accessed; before the first hour
                return result(0)  # it would interpolate towards point −1: take the first point
            f = (hr - h[i - 1]) / (h[i] - h[i - 1])
            p0, q0 = result(i - 1)
            p1, q1 = result(i)
            return p0 + f * (p1 - p0), q0 + f * (q1 - q0)
    return result(n - 2)  # OpenDSS falls through to the second-last point


@dataclass
class LoadInput:
    name: str
    kw_base: float
    kvar_base: float
    status: int
    daily: str | None
    yearly: str | None


@dataclass
class PVInput:
    name: str
    pmpp_kw: float
    irradiance: float
    cutin_kw: float
    cutout_kw: float
    daily: str | None
    yearly: str | None
    duty_start_h: float = 0.0
    temperature_c: float = 25.0
    temp_curve: list | None = None
    eff_curve: list | None = None


@dataclass
class TimeInputs:
    loads: list[LoadInput]
    pvs: list[PVInput]
    shapes: dict[str, LoadShape]
    load_mult: float = 1.0
    unsupported: list[str] = field(default_factory=list)

    def shape(self, name: str | None) -> LoadShape | None:
        return self.shapes.get(name) if name else None


def load_kw_kvar(inputs: TimeInputs, ld: LoadInput, mode: str, hr: float) -> tuple[float, float]:
    """OpenDSS SetNominalLoad (year 0): kW·Factor·Pmult, kvar·Factor·Qmult.

    Factor: 1 for a fixed load (no shape either); LoadMult otherwise, except an exempt load in
    daily mode (OpenDSS applies LoadMult to exempt loads in yearly mode)."""
    if ld.status == STATUS_FIXED:
        return ld.kw_base, ld.kvar_base
    factor = 1.0 if (mode == "daily" and ld.status == STATUS_EXEMPT) else inputs.load_mult
    pm, qm = mult_at_hour(inputs.shape(ld.daily if mode == "daily" else ld.yearly), hr)
    return ld.kw_base * factor * pm, ld.kvar_base * factor * qm


def pv_shape_mult(inputs: TimeInputs, pv: PVInput, mode: str, hr: float) -> float:
    """The irradiance multiplier of PVSystem `pv` (CalcDailyMult / CalcYearlyMult: yearly falls
    back to daily, yearly reads hr + DutyStart; no shape: 1)."""
    if mode == "yearly" and pv.yearly:
        return mult_at_hour(inputs.shape(pv.yearly), hr + pv.duty_start_h)[0]
    return mult_at_hour(inputs.shape(pv.daily), hr)[0]


def read_time_inputs(mode: str) -> TimeInputs:
    """Every load's and PVSystem's time-series settings from the compiled circuit."""
    from market.network.opendss_der import _curve
    from market.network.opendss_import import _activate, _dss, _query

    dss = _dss()
    unsupported: list[str] = []
    shapes: dict[str, LoadShape] = {}
    for name in dss.LoadShape.AllNames():
        dss.LoadShape.Name(name)
        interval = float(dss.LoadShape.HrInterval())
        pm = np.asarray(dss.LoadShape.PMult(), float)
        q = np.asarray(dss.LoadShape.QMult(), float)  # [0] when no QMult was given
        shapes[name.lower()] = LoadShape(
            name.lower(), pm, q if len(q) == len(pm) and len(pm) > 1 else None, interval,
            np.asarray(dss.LoadShape.TimeArray(), float) if interval == 0 else None, bool(dss.LoadShape.UseActual()))

    def shape_name(text: str) -> str | None:
        text = (text or "").strip().lower()
        return text if text and text != "none" and text in shapes else None

    control_mode = int(dss.Solution.ControlMode())
    if control_mode not in (-1, 0):  # -1 off, 0 static; 1 event-driven, 2 time-driven, 3 multirate
        unsupported.append(f"set controlmode (code {control_mode}; time series follow the static control mode)")
    if int(dss.Solution.Year()) != 0:
        unsupported.append(f"solution year {dss.Solution.Year()} (growth shapes are not modelled)")
    loads = []
    ok = dss.Loads.First()
    while ok:
        name = dss.Loads.Name().lower()
        _activate(f"load.{name}")
        if dss.CktElement.Enabled():
            daily = shape_name(dss.Loads.Daily())
            yearly = shape_name(dss.Loads.Yearly()) or daily  # OpenDSS: daily= also sets an unset yearly
            ld = LoadInput(name, float(dss.Loads.kW()), float(dss.Loads.kvar()), int(dss.Loads.Status()),
                           daily, yearly)
            used = shapes.get(ld.daily if mode == "daily" else ld.yearly)
            if used is not None and used.use_actual and ld.status != STATUS_FIXED:
                unsupported.append(f"load.{name} (loadshape {used.name} with useactual=yes)")
            loads.append(ld)
        ok = dss.Loads.Next()
    pvs = []
    for name in dss.PVsystems.AllNames():
        if name.lower() == "none":
            continue
        el = f"pvsystem.{name.lower()}"
        _activate(el)
        if not dss.CktElement.Enabled():
            continue
        kva = float(_query(f"{el}.kva"))
        t_curve = _curve(_query(f"{el}.p-tcurve"))
        t_shape = _query(f"{el}.tdaily" if mode == "daily" else f"{el}.tyearly").strip().lower()
        if t_curve and t_shape and t_shape != "none":
            unsupported.append(f"{el} (temperature shape {t_shape} with a P-TCurve)")
        pvs.append(PVInput(name.lower(), float(_query(f"{el}.pmpp")), float(_query(f"{el}.irradiance")),
                           kva * float(_query(f"{el}.%cutin")) / 100.0, kva * float(_query(f"{el}.%cutout")) / 100.0,
                           shape_name(_query(f"{el}.daily")), shape_name(_query(f"{el}.yearly")),
                           float(_query(f"{el}.dutystart")), float(_query(f"{el}.temperature")), t_curve,
                           _curve(_query(f"{el}.effcurve"))))
    for name in dss.Storages.AllNames():
        if name.lower() != "none":
            unsupported.append(f"storage.{name.lower()} (storage state of charge over time is not modelled)")
    ok = dss.Generators.First()
    while ok:
        g = dss.Generators.Name().lower()
        if any(shape_name(_query(f"generator.{g}.{p}")) for p in ("daily", "yearly", "duty")):
            unsupported.append(f"generator.{g} (generator dispatch shapes are not modelled)")
        ok = dss.Generators.Next()
    return TimeInputs(loads, pvs, shapes, float(dss.Solution.LoadMult()), unsupported)
