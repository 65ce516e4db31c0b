"""PVSystem, Storage and InvControl against OpenDSS in the same process; the Newton fallback.

Cases are built in the test on the shared feeders (`new pvsystem…`, `new storage…` after the
feeder's own file): three-phase wye and delta, one-phase wye (phase-to-neutral) and delta
(phase-to-phase), pf and kvar setpoints, kVA-limited output, a P-T curve, an inverter below its
cut-in, storage charging, discharging and idling. Protocol: OpenDSS settles the feeder's own
controls, those are frozen (regulators, capacitor controls), the DER are added and both tools
solve (OpenDSS at tolerance 1e-10); on IEEE 34 the three-phase DER run above their vmaxpu (constant-Z
fallback). The one-phase delta DER get vmaxpu=1.15: outside its band OpenDSS gives a one-phase
delta PVSystem/Storage Yeq/3 (docs/powerflow.md). Targets: max |ΔV| ≤ 1e-5 pu, losses within 0.1 %.
"""
from __future__ import annotations

import numpy as np
import opendssdirect as dss
import pytest

from market.network.controls import solve_with_controls
from market.network.errors import UnsupportedElementError
from market.network.opendss_import import compile_dss, feeder_from_engine
from market.network.reference import compare, freeze_controls, solve_opendss
from market.network.solver import solve
from market.network.ybus import build_network

pytestmark = pytest.mark.opendss

# feeder -> (3-phase bus, 1-phase bus.node, 1-phase delta bus.n1.n2, second 3-phase bus)
CASES = {
    "ieee13/IEEE13Nodeckt.dss": ("675", "611.3", "684.1.3", "671"),
    "ieee34/ieee34Mod1.dss": ("860", "822.1", "840.2.3", "848"),
    "ieee123/IEEE123Master.dss": ("48", "10.1", "76.1.2", "66"),
}


def _kv_ln(bus: str) -> float:
    dss.Circuit.SetActiveBus(bus.split(".")[0])
    return float(dss.Bus.kVBase())


def _add_der(b3: str, b1: str, bd: str, b3b: str) -> None:
    kv3, kv1, kvd = _kv_ln(b3) * 3 ** 0.5, _kv_ln(b1), _kv_ln(bd) * 3 ** 0.5
    for cmd in (
        "new xycurve.pt npts=3 xarray=[0 25 75] yarray=[1.1 1.0 0.8]",
        f"new pvsystem.pv3y phases=3 bus1={b3} kv={kv3!r} kva=500 pmpp=450 irradiance=0.9 temperature=40 "
        "p-tcurve=pt pf=0.95",
        f"new pvsystem.pv1y phases=1 bus1={b1} kv={kv1!r} kva=120 pmpp=115 irradiance=1 kvar=50",
        f"new pvsystem.pv3d phases=3 bus1={b3b} conn=delta kv={kv3!r} kva=300 pmpp=320 irradiance=1 kvar=-100",
        f"new pvsystem.pv1d phases=1 bus1={bd} conn=delta kv={kvd!r} kva=100 pmpp=80 irradiance=0.8 %pmpp=70 "
        "vmaxpu=1.15",
        f"new pvsystem.pvoff phases=1 bus1={b1} kv={kv1!r} kva=100 pmpp=80 irradiance=0.05 %cutin=10 %cutout=10",
        f"new storage.st3y phases=3 bus1={b3} kv={kv3!r} kwrated=200 kwhrated=800 kva=220 %stored=50 "
        "state=discharging %discharge=80 kvar=50",
        f"new storage.st1y phases=1 bus1={b1} kv={kv1!r} kwrated=50 kwhrated=100 kva=55 %stored=50 "
        "state=charging %charge=60 pf=0.9",
        f"new storage.st1d phases=1 bus1={bd} conn=delta kv={kvd!r} kwrated=50 kwhrated=100 %stored=50 state=idling "
        "vmaxpu=1.15",
    ):
        dss.Text.Command(cmd)


def _settle_and_freeze(feeders_dir, path: str) -> None:
    compile_dss(feeders_dir / path)
    solve_opendss(controls=True)
    freeze_controls()


@pytest.mark.parametrize("path", sorted(CASES))
def test_pv_and_storage_snapshot_match_opendss(feeders_dir, path):
    _settle_and_freeze(feeders_dir, path)
    _add_der(*CASES[path])
    feeder, _ = feeder_from_engine()
    ders = {f"{g.dss_class}.{g.name}": g for g in feeder.generators}
    assert len([k for k in ders if k.startswith(("pvsystem.", "storage."))]) == 8
    # the engine's own nominal output of every PV (importer cross-checks the inverter model)
    for name in dss.PVsystems.AllNames():
        dss.PVsystems.Name(name)
        g = ders[f"pvsystem.{name}"]
        assert (g.kw, g.kvar) == pytest.approx((dss.PVsystems.kW(), dss.PVsystems.kvar()), abs=1e-6)
    assert ders["pvsystem.pvoff"].kw == 0.0  # below cut-in
    assert ders["storage.st1d"].kw == pytest.approx(-0.5)  # idling losses, 1 % of kWrated
    ref = solve_opendss(controls=False, tolerance=1e-10)
    assert ref.converged
    res = solve(build_network(feeder))
    dv, loss_err = compare(ref, res)
    assert dv <= 1e-5 and loss_err <= 1e-3, (dv, loss_err)
    for el in ("pvsystem.pv1y", "storage.st1y", "pvsystem.pv1d"):  # in band: terminal power = nominal
        dss.Circuit.SetActiveElement(el)
        p = -np.asarray(dss.CktElement.Powers())
        g = ders[el]
        assert (p[0::2].sum(), p[1::2].sum()) == pytest.approx((g.kw, g.kvar), abs=1e-3)


@pytest.mark.parametrize("path", sorted(CASES))
def test_volt_var_and_volt_watt_match_opendss(feeders_dir, path):
    _settle_and_freeze(feeders_dir, path)
    dss.Text.Command("batchedit regcontrol..* enabled=no")  # taps stay where OpenDSS set them
    dss.Text.Command("batchedit capcontrol..* enabled=no")
    dss.Text.Command("set controlmode=static")
    _add_der(*CASES[path])
    # no kVA-limited DER under volt-var: with Q priority and VARAVAL every point of the kVA circle
    # is a fixed point (Q = −sqrt(kVA² − P²), P = sqrt(kVA² − Q²)); OpenDSS's answer is then path-dependent
    dss.Text.Command("edit pvsystem.pv3d pmpp=250")
    dss.Text.Command("edit pvsystem.pv1y kvar=0 pmpp=100")
    tight = "varchangetolerance=1e-8 voltagechangetolerance=1e-9 deltaQ_factor=0.3 deltaP_factor=0.3"
    dss.Text.Command("new xycurve.vv npts=4 xarray=[0.5 0.97 1.03 1.5] yarray=[1 1 -1 -1]")
    dss.Text.Command("new xycurve.vw npts=4 xarray=[0.5 0.98 1.02 1.5] yarray=[1 1 0.3 0.3]")
    # the first DER of a list is 3-phase (OpenDSS gives an InvControl its first DER's bus)
    dss.Text.Command(f"new invcontrol.vv derlist=[pvsystem.pv3d pvsystem.pv1y pvsystem.pv1d storage.st3y] "
                     f"mode=voltvar vvc_curve1=vv {tight}")
    dss.Text.Command(f"new invcontrol.vvvw derlist=[pvsystem.pv3y] combimode=vv_vw vvc_curve1=vv "
                     f"voltwatt_curve=vw voltwattyaxis=pmpppu {tight}")
    feeder, _ = feeder_from_engine()
    assert [c.name for c in feeder.inv_controls] == ["vv", "vvvw"]
    dss.Text.Command("set maxcontroliter=1000")
    ref = solve_opendss(controls=True, tolerance=1e-10)
    assert ref.converged
    res = solve_with_controls(feeder)
    dv, loss_err = compare(ref, res)
    assert dv <= 1e-5 and loss_err <= 1e-3, (dv, loss_err)
    ders = {f"{g.dss_class}.{g.name}": g for g in feeder.generators}
    for name in ("pv3d", "pv1y", "pv3y"):
        dss.PVsystems.Name(name)
        g = ders[f"pvsystem.{name}"]
        assert (g.kw, g.kvar) == pytest.approx((dss.PVsystems.kW(), dss.PVsystems.kvar()), abs=5e-3)


def test_unmodelled_der_settings_are_named(feeders_dir):
    compile_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    dss.Text.Command("new pvsystem.zpv phases=3 bus1=675 kv=4.16 kva=500 pmpp=450 model=2")
    dss.Text.Command("new pvsystem.ok phases=3 bus1=671 kv=4.16 kva=500 pmpp=450")
    dss.Text.Command("new invcontrol.drc derlist=[pvsystem.ok] mode=dynamicreaccurr")
    with pytest.raises(UnsupportedElementError) as exc:
        feeder_from_engine()
    names = " ".join(exc.value.names)
    assert "pvsystem.zpv (model=2" in names and "invcontrol.drc (mode=dynamicreaccurr" in names


@pytest.mark.parametrize("case", ["ieee37", "lv390"])
def test_wye_pv_on_floating_delta_converges_like_opendss(feeders_dir, case):
    """Issue 21 item 4: the fixed point diverges (|dV| → 1e50 pu), Newton takes over."""
    if case == "ieee37":
        _settle_and_freeze(feeders_dir, "ieee37/ieee37.dss")
        dss.Text.Command("new pvsystem.pv1 phases=1 bus1=712.2 kv=2.77 kva=200 pmpp=190 irradiance=1")
        target = 1e-6
    else:
        _settle_and_freeze(feeders_dir, "lv-network-390/Master.dss")
        hv = [b for b in dss.Circuit.AllBusNames() if abs(_kv_ln(b) * 3 ** 0.5 - 13.8) < 0.1][:4]
        for i, bus in enumerate(hv):
            dss.Text.Command(f"new pvsystem.pv{i} phases=1 bus1={bus}.{i % 3 + 1} kv={13.8 / 3 ** 0.5!r} "
                             "kva=200 pmpp=190 irradiance=1")
        target = 1e-5
    ref = solve_opendss(controls=False, tolerance=1e-10)
    assert ref.converged
    feeder, _ = feeder_from_engine()
    res = solve(build_network(feeder))
    assert res.method == "newton"
    dv, loss_err = compare(ref, res)
    assert dv <= target and loss_err <= 1e-3, (dv, loss_err)
