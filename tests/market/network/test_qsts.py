"""Quasi-static time series against OpenDSS's own daily mode, in the same process.

Scenario: IEEE 123 (its 7 regulators acting, OpenDSS's default static control mode in time
series) with a 24-point residential load shape on every load, two PVSystems (three-phase 500 kW at
bus 67, one-phase 150 kW at 83.1) following a 24-point irradiance shape and a volt-var InvControl
on both; 96 steps of 15 minutes (`set mode=daily stepsize=900s`, one `solve` per step). Per step:
max |ΔV| over every bus·node ≤ 1e-4 pu, the same tap position of every regulator, and over the run
the same tap operations as OpenDSS's event log; energy losses within 0.1 %.
"""
from __future__ import annotations

import numpy as np
import pytest

from market.network.errors import UnsupportedElementError
from market.network.opendss_import import compile_dss
from market.network.qsts_case import write_pv_case
from market.network.reference import solve_opendss_qsts, tap_operations_logged
from market.network.shapes import LoadShape, mult_at_hour
from market.network.timeseries import run_qsts

LOAD_SHAPE = ("0.45 0.40 0.38 0.37 0.38 0.45 0.60 0.75 0.80 0.78 0.76 0.75 0.74 0.73 0.75 0.80 0.90 1.05 1.15 "
              "1.20 1.10 0.95 0.75 0.55")
SOLAR_SHAPE = "0 0 0 0 0 0.02 0.1 0.3 0.5 0.7 0.85 0.95 1.0 0.97 0.88 0.72 0.52 0.3 0.1 0.02 0 0 0 0"


def _case(tmp_path, feeders_dir, extra: str = "") -> str:
    path = tmp_path / "daily_pv.dss"
    path.write_text(f"""redirect {feeders_dir.resolve() / 'ieee123' / 'IEEE123Master.dss'}
new loadshape.res npts=24 interval=1 mult=[{LOAD_SHAPE}]
new loadshape.solar npts=24 interval=1 mult=[{SOLAR_SHAPE}]
batchedit load..* daily=res
new xycurve.vv npts=4 xarray=[0.9 0.97 1.03 1.1] yarray=[1 0 0 -1]
new pvsystem.pv1 phases=3 bus1=67 kv=4.16 kva=550 pmpp=500 irradiance=1 daily=solar pf=1
new pvsystem.pv2 phases=1 bus1=83.1 kv=2.402 kva=165 pmpp=150 irradiance=1 daily=solar pf=1
new invcontrol.ivc mode=voltvar vvc_curve1=vv derlist=[pvsystem.pv1 pvsystem.pv2] varchangetolerance=1e-8
{extra}
set voltagebases=[4.16 0.48]
calcvoltagebases
""")
    return str(path)


@pytest.mark.opendss
def test_daily_qsts_ieee123_pv_voltvar_matches_opendss(tmp_path, feeders_dir):
    path = _case(tmp_path, feeders_dir)
    ours = []
    res = run_qsts(path, "daily", steps=96, step_s=900.0,
                   on_step=lambda k, t, r: ours.append((r.v.copy(), r.network.index, r.network.vbase_v)))
    assert res.steps == 96 and res.time_s[0] == 900.0 and res.time_s[-1] == 86400.0
    assert res.der_kw.max() > 500.0 and res.der_kw[:20].max() == 0.0  # the sun rises; night has no PV
    compile_dss(path)
    dv, taps_dss, losses = [], [], []
    for k, (ref, taps) in enumerate(solve_opendss_qsts("daily", 96, 900.0, res.regulators)):
        v, index, base = ours[k]
        keys = list(ref.v)
        idx = np.array([index[key] for key in keys])
        dv.append(float(np.max(np.abs(v[idx] - np.array([ref.v[key] for key in keys])) / base[idx])))
        taps_dss.append(taps)
        losses.append(ref.losses_kw)
    taps_dss = np.array(taps_dss)
    assert max(dv) <= 1e-4, f"max |dV| {max(dv):.2e} pu at step {int(np.argmax(dv)) + 1}"
    differ = np.nonzero(np.any(taps_dss != res.tap_steps, axis=1))[0]
    assert len(differ) == 0, f"tap positions differ at steps {differ[:10] + 1}"
    assert len(np.unique(res.tap_steps, axis=0)) > 5  # the regulators do follow the day
    assert res.summary()["tap_operations"] == tap_operations_logged()
    energy_dss = sum(losses) * 0.25
    assert abs(res.energy_losses_kwh - energy_dss) <= 1e-3 * energy_dss


@pytest.mark.opendss
def test_summary_counts_hours_outside_limits(tmp_path, feeders_dir):
    path = _case(tmp_path, feeders_dir)
    res = run_qsts(path, "daily", steps=24, step_s=3600.0, v_min_pu=0.99, v_max_pu=1.01)
    s = res.summary()
    assert s["steps"] == 24 and s["duration_h"] == 24.0
    assert s["buses_outside_limits"] > 0
    assert all(0 < h <= 24.0 for h in s["hours_outside_limits_by_bus"].values())
    assert s["steps_with_violations"] == int(np.count_nonzero(res.violations))
    assert max(s["hours_outside_limits_by_bus"].values()) <= s["steps_with_violations"]
    assert s["energy_losses_kwh"] == pytest.approx(res.losses_kw.sum())
    assert np.all(np.isfinite(res.v_watched_pu)) and res.v_watched_pu.shape == (24, len(res.watched))


@pytest.mark.opendss
def test_storage_is_named_not_silently_held(tmp_path, feeders_dir):
    path = _case(tmp_path, feeders_dir, "new storage.bat phases=3 bus1=48 kv=4.16 kwrated=100 kwhrated=400")
    with pytest.raises(UnsupportedElementError) as err:
        run_qsts(path, "daily", steps=2, step_s=900.0)
    assert any("storage.bat" in n for n in err.value.names)


@pytest.mark.parametrize("shape, hour, expected", [
    (LoadShape("h", np.array([1.0, 2.0, 3.0])), 0.0, (3.0, 3.0)),       # index 0 -> the last point
    (LoadShape("h", np.array([1.0, 2.0, 3.0])), 1.0, (1.0, 1.0)),
    (LoadShape("h", np.array([1.0, 2.0, 3.0])), 1.4, (1.0, 1.0)),       # nearest point, no interpolation
    (LoadShape("h", np.array([1.0, 2.0, 3.0])), 2.5, (2.0, 2.0)),       # Pascal round: half to even
    (LoadShape("h", np.array([1.0, 2.0, 3.0])), 4.0, (1.0, 1.0)),       # wraps around
    (LoadShape("h", np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.6, 0.7])), 2.0, (2.0, 0.6)),
    (LoadShape("q", np.array([1.0, 2.0]), interval_h=0.25), 0.5, (2.0, 2.0)),
    (LoadShape("v", np.array([1.0, 3.0, 2.0]), interval_h=0.0, hours=np.array([0.0, 2.0, 4.0])), 1.0, (2.0, 2.0)),
    (LoadShape("v", np.array([1.0, 3.0, 2.0]), interval_h=0.0, hours=np.array([0.0, 2.0, 4.0])), 5.0, (2.0, 2.0)),
    (LoadShape("a", np.array([5.0, 6.0]), use_actual=True), 1.0, (5.0, 0.0)),
    (None, 7.0, (1.0, 1.0)),
])
def test_mult_at_hour_follows_opendss(shape, hour, expected):
    assert mult_at_hour(shape, hour) == pytest.approx(expected)


@pytest.mark.opendss
def test_yearly_qsts_week_matches_opendss(tmp_path, feeders_dir):
    """The first week (168 one-hour steps) of a yearly run (8760-point yearly= shapes on every load
    and both PVSystems, market.network.qsts_case), every step against OpenDSS's own
    yearly mode (`set mode=yearly stepsize=3600s`): max |ΔV| ≤ 1e-4 pu per step, identical tap
    positions per step, the same total tap operations, energy losses within 0.1 %. The full
    8760 steps run in `python -m bench.powerflow` (qsts_yearly_*), which checks the same per step."""
    path = write_pv_case(tmp_path, feeders_dir / "ieee123" / "IEEE123Master.dss", "yearly")
    ours = []
    res = run_qsts(path, "yearly", steps=168, step_s=3600.0,
                   on_step=lambda k, t, r: ours.append((r.v.copy(), r.network.index, r.network.vbase_v)))
    assert res.steps == 168 and res.mode == "yearly" and res.time_s[-1] == 168 * 3600.0
    assert res.der_kw.max() > 300.0 and res.der_kw[:5].max() == 0.0
    daily_load = res.load_kw.reshape(7, 24).sum(axis=1)
    assert np.ptp(daily_load) > 0.02 * daily_load.mean()  # the yearly shape, not one repeated day
    compile_dss(path)
    dv, taps_dss, losses = [], [], []
    for k, (ref, taps) in enumerate(solve_opendss_qsts("yearly", 168, 3600.0, res.regulators)):
        v, index, base = ours[k]
        keys = list(ref.v)
        idx = np.array([index[key] for key in keys])
        dv.append(float(np.max(np.abs(v[idx] - np.array([ref.v[key] for key in keys])) / base[idx])))
        taps_dss.append(taps)
        losses.append(ref.losses_kw)
    assert max(dv) <= 1e-4, f"max |dV| {max(dv):.2e} pu at step {int(np.argmax(dv)) + 1}"
    differ = np.nonzero(np.any(np.array(taps_dss) != res.tap_steps, axis=1))[0]
    assert len(differ) == 0, f"tap positions differ at steps {differ[:10] + 1}"
    assert len(np.unique(res.tap_steps, axis=0)) > 5
    assert res.summary()["tap_operations"] == tap_operations_logged()
    assert abs(res.energy_losses_kwh - sum(losses)) <= 1e-3 * sum(losses)
