"""The QSTS validation scenario (tests and bench.powerflow): IEEE 123 with PV and volt-var.

Its 7 regulators acting; two PVSystems (three-phase 500 kW at bus 67, one-phase 150 kW at 83.1)
under one volt-var InvControl; every load on a residential load shape and both PVSystems on an
irradiance shape. `daily`: 24-point shapes (`daily=`); `yearly`: 8760-point shapes (`yearly=`,
from CSV files beside the case) — the same daily profiles scaled by a season (winter peak,
±25 %) and a deterministic day-to-day weather factor (0.9–1.1), irradiance the other way round.
`write_pv_case(out_dir, ieee123_master, mode)` writes the files and returns the .dss path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

LOAD_SHAPE = ("0.45 0.40 0.38 0.37 0.38 0.45 0.60 0.75 0.80 0.78 0.76 0.75 0.74 0.73 0.75 0.80 0.90 1.05 1.15 "
              "1.20 1.10 0.95 0.75 0.55")
SOLAR_SHAPE = "0 0 0 0 0 0.02 0.1 0.3 0.5 0.7 0.85 0.95 1.0 0.97 0.88 0.72 0.52 0.3 0.1 0.02 0 0 0 0"


def yearly_shapes() -> tuple[np.ndarray, np.ndarray]:
    """(load multiplier, irradiance) for each hour of the year (8760 points)."""
    hours = np.arange(8760)
    day = hours // 24
    season = 1.0 + 0.25 * np.cos(2 * np.pi * (day - 15) / 365.0)
    weather = 0.9 + 0.2 * ((day * 7919) % 101) / 100.0
    load = np.array([float(x) for x in LOAD_SHAPE.split()])[hours % 24] * season * weather
    sun = np.array([float(x) for x in SOLAR_SHAPE.split()])[hours % 24] * (2.0 - season) * (2.0 - weather)
    return load, np.clip(sun, 0.0, 1.0)


def write_pv_case(out_dir: str | Path, ieee123_master: str | Path, mode: str = "daily") -> str:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "daily":
        shapes = (f"new loadshape.res npts=24 interval=1 mult=[{LOAD_SHAPE}]\n"
                  f"new loadshape.solar npts=24 interval=1 mult=[{SOLAR_SHAPE}]\n")
        attach = "daily"
    elif mode == "yearly":
        load, sun = yearly_shapes()
        (out / "load8760.csv").write_text("\n".join(f"{x:.6f}" for x in load))
        (out / "sun8760.csv").write_text("\n".join(f"{x:.6f}" for x in sun))
        shapes = ("new loadshape.res npts=8760 interval=1 mult=(file=load8760.csv)\n"
                  "new loadshape.solar npts=8760 interval=1 mult=(file=sun8760.csv)\n")
        attach = "yearly"
    else:
        raise ValueError(f"mode must be daily or yearly, not {mode!r}")
    path = out / f"{mode}_pv.dss"
    path.write_text(f"""redirect {Path(ieee123_master).resolve()}
{shapes}batchedit load..* {attach}=res
new xycurve.vv npts=4 xarray=[0.9 0.97 1.03 1.1] yarray=[1 0 0 -1]
new pvsystem.pv1 phases=3 bus1=67 kv=4.16 kva=550 pmpp=500 irradiance=1 {attach}=solar pf=1
new pvsystem.pv2 phases=1 bus1=83.1 kv=2.402 kva=165 pmpp=150 irradiance=1 {attach}=solar pf=1
new invcontrol.ivc mode=voltvar vvc_curve1=vv derlist=[pvsystem.pv1 pvsystem.pv2] varchangetolerance=1e-8
set voltagebases=[4.16 0.48]
calcvoltagebases
""")
    return str(path)
