"""Regulator tap control, capacitor control and Q(V) against OpenDSS's own controlled solution."""
from __future__ import annotations

import numpy as np
import pytest

from market.network.controls import solve_feeder, solve_with_controls
from market.network.model import Generator
from market.network.opendss_import import compile_dss, feeder_from_engine
from market.network.reference import solve_opendss, transformer_taps

pytestmark = pytest.mark.opendss


def _reset_taps_to_neutral() -> None:
    import opendssdirect as dss

    ok = dss.RegControls.First()
    while ok:
        dss.Text.Command(f"edit transformer.{dss.RegControls.Transformer()} wdg={dss.RegControls.Winding()} tap=1.0")
        ok = dss.RegControls.Next()


@pytest.mark.parametrize("path", ["ieee13/IEEE13Nodeckt.dss", "ieee34/ieee34Mod1.dss", "ieee37/ieee37.dss",
                                  "ieee123/IEEE123Master.dss", "ieee8500/Master.dss"])
def test_taps_and_capacitors_match_opendss_controlled_solution(feeders_dir, path):
    compile_dss(feeders_dir / path)
    _reset_taps_to_neutral()  # start both tools from neutral taps so the loop has work to do
    feeder, _ = feeder_from_engine()
    res = solve_with_controls(feeder)
    ref = solve_opendss(controls=True)
    taps = transformer_taps()
    moved = 0
    for reg in feeder.regulators:
        w = feeder.transformer(reg.transformer).windings[reg.winding - 1]
        assert w.tap_pu == pytest.approx(taps[reg.transformer][reg.winding - 1], abs=1e-9), reg.name
        moved += w.tap_pu != 1.0
    assert moved >= 1 and res.control_iterations >= 1
    import opendssdirect as dss

    for cap in feeder.capacitors:
        dss.Capacitors.Name(cap.name)
        assert list(dss.Capacitors.States()) == cap.states, cap.name
    net = res.network
    dv = max(abs(res.v[net.index[k]] - v) / net.vbase_v[net.index[k]] for k, v in ref.v.items())
    assert dv <= 1e-3


def test_controlled_voltage_ends_inside_band(feeders_dir):
    compile_dss(feeders_dir / "ieee123/IEEE123Master.dss")
    _reset_taps_to_neutral()
    feeder, _ = feeder_from_engine()
    res = solve_with_controls(feeder)
    from market.network.controls import winding_voltage

    for reg in feeder.regulators:
        tr = feeder.transformer(reg.transformer)
        w = tr.windings[reg.winding - 1]
        from market.network.controls import block_slice

        _, sl = block_slice(res, "transformer", tr.name)
        i_in = res.terminal_currents()[sl][(reg.winding - 1) * (tr.phases + 1) + reg.pt_phase - 1]
        v_c = abs(winding_voltage(res, tr, reg.winding - 1, reg.pt_phase) / reg.pt_ratio
                  + complex(reg.r_ldc_v, reg.x_ldc_v) * i_in / reg.ct_primary_a)
        step = (w.max_tap_pu - w.min_tap_pu) / w.num_taps
        at_limit = w.tap_pu in (w.min_tap_pu, w.max_tap_pu)
        # inside the band, or less than half a step away from it (no whole step would help)
        assert at_limit or abs(v_c - reg.vreg_v) <= reg.band_v / 2 + step * 120 / 2, reg.name


def test_controls_off_holds_taps(feeders_dir):
    compile_dss(feeders_dir / "ieee123/IEEE123Master.dss")
    _reset_taps_to_neutral()
    feeder, _ = feeder_from_engine()
    feeder.controls_on = False
    res = solve_feeder(feeder)
    assert all(t == 1.0 for t in res.taps.values()) and res.control_iterations == 0


def test_qv_curve_settles_on_the_curve(feeders_dir):
    compile_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    feeder, _ = feeder_from_engine()
    curve = [(0.95, 300.0), (1.0, 0.0), (1.05, -300.0)]  # droop, no dead band
    feeder.generators.append(Generator("pv675", "675", (1, 2, 3, 0), 3, 400.0, 0.0, 4.16, qv_curve=curve))
    res = solve_with_controls(feeder)
    g = feeder.generators[-1]
    v = float(np.mean([res.v_pu[res.network.index[("675", k)]] for k in (1, 2, 3)]))
    target = float(np.interp(v, [p[0] for p in curve], [p[1] for p in curve]))
    assert abs(g.kvar - target) <= 0.02
    assert abs(g.kvar) > 1.0  # off 1.0 pu, so the DER really exchanges vars


@pytest.mark.parametrize("case", ["caps_open", "light_load"])
def test_capacitor_controls_switch_like_opendss(feeders_dir, case):
    """IEEE 8500, kvar-type capacitor controls with voltage override and 12 regulators acting
    together: every capacitor opened (controls reclose them), or 25 % load (LoadMult; fixed-status
    loads keep their kW; controls open capacitors) — same end state as OpenDSS."""
    import opendssdirect as dss

    compile_dss(feeders_dir / "ieee8500/Master.dss")
    if case == "caps_open":
        for name in dss.Capacitors.AllNames():
            dss.Text.Command(f"edit capacitor.{name} states=[0]")
    else:
        dss.Text.Command("set loadmult=0.25")
    feeder, _ = feeder_from_engine()
    solve_with_controls(feeder)
    solve_opendss(controls=True)
    switched = 0
    for cap in feeder.capacitors:
        dss.Capacitors.Name(cap.name)
        assert list(dss.Capacitors.States()) == cap.states, cap.name
        switched += cap.states[0] == (case == "caps_open")
    assert switched >= 3  # controls really acted
    taps = transformer_taps()
    for reg in feeder.regulators:
        w = feeder.transformer(reg.transformer).windings[reg.winding - 1]
        assert w.tap_pu == pytest.approx(taps[reg.transformer][reg.winding - 1], abs=1e-9), reg.name
