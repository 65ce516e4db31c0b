"""Shunt reactors, CapControl current/pf/time (and voltage with ptphase max/min, kvar with default
PT/CT), RegControl with a remote regulated bus and ptphase=max|min, against OpenDSS in the same run.

Every case is a master file written in the test: `redirect` to a shared IEEE feeder, then the
`new reactor…` / `new capcontrol…` / `edit regcontrol…` lines. Thresholds of capacitor controls are
set from the quantity OpenDSS measures on the plain feeder, so that each control really switches.
Shunt reactors: OpenDSS settles the feeder's controls, they are frozen, both tools solve the same
state (OpenDSS tolerance 1e-10). Controls: both start from the compiled state (regulator taps reset
to neutral) and run their own control loops; settled capacitor states and taps must be identical
and voltages within 1e-6 pu.
"""
from __future__ import annotations

import numpy as np
import opendssdirect as dss
import pytest

from market.network.controls import solve_with_controls
from market.network.errors import UnsupportedElementError
from market.network.opendss_import import compile_dss, feeder_from_engine
from market.network.reference import compare, freeze_controls, solve_opendss, transformer_taps
from market.network.solver import solve
from market.network.ybus import build_network

pytestmark = pytest.mark.opendss

FEEDERS = {"ieee13": "ieee13/IEEE13Nodeckt.dss", "ieee34": "ieee34/ieee34Mod1.dss",
           "ieee123": "ieee123/IEEE123Master.dss"}


def _master(tmp_path, feeders_dir, feeder: str, lines: list[str]) -> None:
    path = tmp_path / f"{feeder}_case.dss"
    path.write_text("\n".join([f'redirect "{(feeders_dir / FEEDERS[feeder]).resolve()}"', *lines]) + "\n")
    compile_dss(path)


def _kv_ll(bus: str) -> float:
    dss.Circuit.SetActiveBus(bus)
    return float(dss.Bus.kVBase()) * 3 ** 0.5


# --- shunt reactors -----------------------------------------------------------------------------

REACTORS = {  # feeder -> (3-phase bus, second 3-phase bus, 1-phase bus.node, xfm winding-2 bus)
    "ieee13": ("675", "692", "611.3", "634"),
    "ieee34": ("860", "848", "822.1", "888"),
    "ieee123": ("48", "66", "10.1", "610"),
}


def _reactor_lines(feeders_dir, feeder: str) -> list[str]:
    b3, b3b, b1, bx = REACTORS[feeder]
    compile_dss(feeders_dir / FEEDERS[feeder])
    kv3, kv3b, kv1 = _kv_ll(b3), _kv_ll(b3b), _kv_ll(b1.split(".")[0]) / 3 ** 0.5
    kvx = _kv_ll(bx) / 3 ** 0.5
    return [
        f"new reactor.shwye phases=3 bus1={b3} kv={kv3:.6f} kvar=150",  # wye to ground
        f"new reactor.shdelta phases=3 bus1={b3b} conn=delta kv={kv3b:.6f} kvar=120",
        f"new reactor.sh1 phases=1 bus1={b1} kv={kv1:.6f} kvar=40 rp=2000",  # 1-phase, parallel R
        f"edit transformer.xfm1 wdg=2 conn=wye bus={bx}.1.2.3.4",  # wye neutral on node 4 ...
        f"new reactor.ngr phases=1 bus1={bx}.4 bus2={bx}.0 r=0.02 x=0.3",  # ... grounded through a reactor
        f"new load.unbalance phases=1 bus1={bx}.1 kv={kvx:.6f} kw=50 kvar=20",  # its return current flows in it
    ]


@pytest.mark.parametrize("feeder", sorted(REACTORS))
def test_shunt_reactors_match_opendss(tmp_path, feeders_dir, feeder):
    _master(tmp_path, feeders_dir, feeder, _reactor_lines(feeders_dir, feeder))
    solve_opendss(controls=True)
    freeze_controls()
    ref = solve_opendss(controls=False, tolerance=1e-10)
    assert ref.converged
    fd, _ = feeder_from_engine()
    assert sorted(s.name for s in fd.shunts) == ["ngr", "sh1", "shdelta", "shwye"]
    res = solve(build_network(fd))
    dv, dloss = compare(ref, res)
    assert dv <= 1e-6 and dloss <= 1e-6, (dv, dloss)
    # the neutral really floats on the reactor (it is not a solidly grounded node)
    bx = REACTORS[feeder][3]
    assert abs(ref.v[(bx, 4)]) > 1.0  # volts
    assert abs(res.voltage(bx, 4) - ref.v[(bx, 4)]) / abs(ref.v[(bx, 4)]) <= 1e-5


# --- capacitor controls -------------------------------------------------------------------------

def _pf_range2(s: complex) -> float:
    pf = abs(s.real) / abs(s)
    return 2.0 - pf if s.imag < 0 else pf


def _measure(element: str) -> tuple[np.ndarray, np.ndarray, complex]:
    """(|I| of terminal 1's conductors, |V| of terminal 1's conductors, S into terminal 1 VA)."""
    dss.Circuit.SetActiveElement(element)
    nc = dss.CktElement.NumConductors()
    i = np.asarray(dss.CktElement.CurrentsMagAng())[0:2 * nc:2]
    v = np.asarray(dss.CktElement.VoltagesMagAng())[0:2 * nc:2]
    p = np.asarray(dss.CktElement.Powers())[:2 * nc]
    return i, v, complex(p[0::2].sum(), p[1::2].sum()) * 1000.0


def _cap_case(feeders_dir, case: str) -> tuple[str, list[str], dict[str, int]]:
    """(feeder, master lines, expected settled states of the controlled capacitors)."""
    feeder = case.split("-")[0]
    compile_dss(feeders_dir / FEEDERS[feeder])
    dss.Solution.Solve()
    if case == "ieee13-current":  # cap1 closed; line current below OFF -> opens (stays open: below ON)
        i, _, _ = _measure("line.692675")
        return feeder, [f"new capcontrol.cci capacitor=cap1 element=line.692675 type=current ctratio=1 "
                        f"on={3 * i[0]:.3f} off={1.1 * i[0]:.3f}"], {"cap1": 0}
    if case == "ieee13-pf":  # cap2 opened; lagging pf below ON and Q above half the bank -> closes
        dss.Text.Command("edit capacitor.cap2 states=[0]")
        dss.Solution.Solve()
        _, _, s = _measure("line.684611")
        return feeder, ["edit capacitor.cap2 states=[0]",
                        f"new capcontrol.ccpf capacitor=cap2 element=line.684611 type=pf "
                        f"on={min(_pf_range2(s) + 0.02, 0.999):.4f} off=-0.9"], {"cap2": 1}
    if case == "ieee13-time":  # hour 0 is outside [8, 20): the closed bank opens
        return feeder, ["new capcontrol.cct capacitor=cap1 element=line.692675 type=time on=8 off=20"], {"cap1": 0}
    if case == "ieee34-current-avg":  # ctphase=avg: mean |I| of the bank's phases
        i, _, _ = _measure("line.l21")
        return feeder, [f"new capcontrol.cci capacitor=c844 element=line.l21 type=current ctratio=1 ctphase=avg "
                        f"on={5 * i[:3].mean():.3f} off={1.05 * i[:3].mean():.3f}"], {"c844": 0}
    if case == "ieee34-voltage-max":  # ptphase=max: opens above OFF on the highest phase
        _, v, _ = _measure("line.l23")
        vmax = v[:3].max() / 120
        return feeder, [f"new capcontrol.ccv capacitor=c848 element=line.l23 type=voltage ptratio=120 ptphase=max "
                        f"on={0.9 * vmax:.4f} off={0.999 * vmax:.4f}"], {"c848": 0}
    if case == "ieee34-time-hour10":  # set hour=10: inside [8, 20), the opened bank closes
        return feeder, ["edit capacitor.c848 states=[0]", "set hour=10",
                        "new capcontrol.cct capacitor=c848 element=line.l23 type=time on=8 off=20"], {"c848": 1}
    if case == "ieee123-pf-transformer":  # monitored at the substation regulator's primary
        dss.Text.Command("edit capacitor.c83 states=[0]")
        dss.Solution.Solve()
        _, _, s = _measure("transformer.reg1a")
        return feeder, ["edit capacitor.c83 states=[0]",
                        f"new capcontrol.ccpf capacitor=c83 element=transformer.reg1a terminal=1 type=pf "
                        f"on={min(_pf_range2(s) + 0.03, 0.999):.4f} off=-0.95"], {"c83": 1}
    if case == "ieee123-current-max":
        i, _, _ = _measure("line.l84")
        return feeder, [f"new capcontrol.cci capacitor=c83 element=line.l84 type=current ctratio=1 ctphase=max "
                        f"on={5 * i[:3].max():.3f} off={1.05 * i[:3].max():.3f}"], {"c83": 0}
    if case == "ieee123-time-overnight":  # OFF < ON: hour 3 is in [OFF=2, ON=18): opens
        return feeder, ["set hour=3",
                        "new capcontrol.cct capacitor=c88a element=line.l87 type=time on=18 off=2"], {"c88a": 0}
    if case == "ieee123-kvar-default-ptct":  # kvar needs no PT/CT scaling (ptratio=ctratio=60 here)
        dss.Text.Command("edit capacitor.c90b states=[0]")
        dss.Solution.Solve()
        _, _, s = _measure("line.l89")
        return feeder, ["edit capacitor.c90b states=[0]",
                        f"new capcontrol.cckv capacitor=c90b element=line.l89 type=kvar "
                        f"on={0.5 * s.imag / 1000:.4f} off=-1000"], {"c90b": 1}
    if case == "ieee123-voltage-min-override":  # ptphase=min with voltage override on a current control
        _, v, _ = _measure("line.l84")
        vmin = v[:3].min() / 20
        return feeder, [f"new capcontrol.cco capacitor=c83 element=line.l84 type=current ctratio=1 on=1e6 off=0 "
                        f"ptratio=20 ptphase=min voltoverride=yes vmin={0.5 * vmin:.4f} vmax={0.995 * vmin:.4f}"],\
            {"c83": 0}
    raise KeyError(case)


CAP_CASES = ["ieee13-current", "ieee13-pf", "ieee13-time", "ieee34-current-avg", "ieee34-voltage-max",
             "ieee34-time-hour10", "ieee123-pf-transformer", "ieee123-current-max", "ieee123-time-overnight",
             "ieee123-kvar-default-ptct", "ieee123-voltage-min-override"]


def _reset_taps_to_neutral() -> None:
    ok = dss.RegControls.First()
    while ok:
        dss.Text.Command(f"edit transformer.{dss.RegControls.Transformer()} wdg={dss.RegControls.Winding()} tap=1.0")
        ok = dss.RegControls.Next()


def _settle_both() -> tuple[object, object]:
    """colorgrid's control loop and OpenDSS's from the same engine state; (feeder, result, ref)."""
    _reset_taps_to_neutral()
    fd, _ = feeder_from_engine()
    res = solve_with_controls(fd)
    ref = solve_opendss(controls=True, tolerance=1e-10)
    assert ref.converged
    taps = transformer_taps()
    for reg in fd.regulators:
        w = fd.transformer(reg.transformer).windings[reg.winding - 1]
        assert w.tap_pu == pytest.approx(taps[reg.transformer][reg.winding - 1], abs=1e-12), reg.name
    for cap in fd.capacitors:
        dss.Capacitors.Name(cap.name)
        assert list(dss.Capacitors.States()) == cap.states, cap.name
    dv, _ = compare(ref, res)
    assert dv <= 1e-6, dv
    return fd, res


@pytest.mark.parametrize("case", CAP_CASES)
def test_capacitor_controls_settle_like_opendss(tmp_path, feeders_dir, case):
    feeder, lines, expected = _cap_case(feeders_dir, case)
    _master(tmp_path, feeders_dir, feeder, lines)
    fd, _ = _settle_both()
    states = {c.name: c.states[0] for c in fd.capacitors}
    assert {k: states[k] for k in expected} == expected  # the control really switched


# --- regulators: remote bus, ptphase=max|min ----------------------------------------------------

REG_CASES = {
    "ieee13-remote-bus": ("ieee13", [f"edit regcontrol.reg{k} bus=675.{k} remoteptratio=20 vreg=121 band=2"
                                     for k in (1, 2, 3)]),
    "ieee34-remote-bus": ("ieee34", [f"edit regcontrol.creg2{p} bus=860.{k} remoteptratio=120 vreg=122"
                                     for k, p in ((1, "a"), (2, "b"), (3, "c"))]),
    "ieee123-ptphase-max": ("ieee123", ["edit regcontrol.creg1a ptphase=max"]),
    "ieee123-ptphase-min": ("ieee123", ["edit regcontrol.creg1a ptphase=min"]),
    "ieee123-remote-bus": ("ieee123", ["edit regcontrol.creg1a bus=48.1 remoteptratio=20 vreg=120"]),
}


@pytest.mark.parametrize("case", sorted(REG_CASES))
def test_regulators_settle_like_opendss(tmp_path, feeders_dir, case):
    feeder, lines = REG_CASES[case]
    _master(tmp_path, feeders_dir, feeder, lines)
    fd, res = _settle_both()
    regs = {r.name: r for r in fd.regulators}
    if "remote" in case:
        assert any(r.regulated_bus for r in regs.values())
    else:
        assert regs["creg1a"].pt_select == case.rsplit("-", 1)[1]
    assert any(t != 1.0 for t in res.taps.values())


def test_ptphase_max_and_min_pick_different_phases(tmp_path, feeders_dir):
    """On IEEE 123's three-phase substation regulator max and min settle different taps."""
    taps = {}
    for sel in ("max", "min"):
        _master(tmp_path, feeders_dir, "ieee123", [f"edit regcontrol.creg1a ptphase={sel}"])
        _reset_taps_to_neutral()
        fd, _ = feeder_from_engine()
        taps[sel] = solve_with_controls(fd).taps["creg1a"]
    assert taps["max"] < taps["min"]


@pytest.mark.parametrize("line, named", [
    ("edit regcontrol.reg1 reversible=yes", "reversible"),
    ("edit regcontrol.reg1 vlimit=125", "vlimit"),
    ("new regcontrol.r2x transformer=reg2 winding=2 bus=675.2 ptphase=2", "ptphase=2"),
    ("new capcontrol.cvb capacitor=cap1 element=line.692675 type=current vbus=675 voltoverride=yes", "vbus"),
])
def test_what_is_not_modelled_is_named(tmp_path, feeders_dir, line, named):
    _master(tmp_path, feeders_dir, "ieee13", [line])
    with pytest.raises(UnsupportedElementError) as err:
        feeder_from_engine()
    assert any(named in n for n in err.value.names), err.value.names
