"""Data-model validation errors, hand-computed cases, Yprims vs OpenDSS, failure modes."""
from __future__ import annotations

import numpy as np
import pytest

from market.network.errors import (IslandedSectionError, NonPositiveImpedanceError, PhaseMismatchError,
                                   PowerFlowNotConverged, UnknownBusError, UnsupportedElementError)
from market.network.model import Bus, Feeder, Line, Load, Source
from market.network.opendss_import import _yprim, compile_dss, feeder_from_engine, load_dss
from market.network.primitives import capacitor_yprim, line_yprim, transformer_yprim
from market.network.solver import solve
from market.network.ybus import build_network


def two_bus(load_model: int = 2, kw: float = 300.0, kvar: float = 100.0, zline=complex(0.5, 1.0)) -> Feeder:
    """Single-phase source → line → wye load (kV 7.2 line-to-neutral), buildable by hand."""
    zs = np.diag([complex(0.01, 0.05)] * 3)
    buses = {"src": Bus("src", (1, 2, 3), 7.2), "a": Bus("a", (1,), 7.2)}
    line = Line("l1", "src", (1,), "a", (1,), np.array([[zline]]))
    load = Load("ld", "a", (1, 0), 1, kw, kvar, 7.2, "wye", load_model)
    return Feeder("two_bus", buses, Source("s", "src", 7.2 * np.sqrt(3), zs), [line], loads=[load]).validate()


def test_constant_impedance_load_matches_voltage_divider():
    f = two_bus(load_model=2)
    res = solve(build_network(f))
    e = 7200.0
    zsrc = complex(0.01, 0.05)
    zload = (7200.0 ** 2) / np.conj(complex(300e3, 100e3))
    expected = e * zload / (zsrc + complex(0.5, 1.0) + zload)
    assert abs(res.voltage("a", 1) - expected) < 1e-6 * e


def test_constant_power_load_draws_its_power():
    f = two_bus(load_model=1)
    res = solve(build_network(f))
    v_a = res.voltage("a", 1)
    v_src = res.voltage("src", 1)
    i = (v_src - v_a) / complex(0.5, 1.0)
    s = v_a * np.conj(i)
    assert abs(s - complex(300e3, 100e3)) < 1e-3  # VA
    # losses = |I|² R of the line (the source Thevenin is not a network element)
    assert abs(res.losses_va().real - abs(i) ** 2 * 0.5) < 1e-6


def test_line_yprim_hand_computed():
    z = np.array([[complex(1, 2), complex(0.1, 0.4)], [complex(0.1, 0.4), complex(1, 2)]])
    ysh = 1j * 1e-5 * np.eye(2)
    conds, y = line_yprim(Line("x", "a", (1, 2), "b", (1, 2), z, ysh))
    ys = np.linalg.inv(z)
    assert conds == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert np.allclose(y[:2, :2], ys + ysh / 2) and np.allclose(y[:2, 2:], -ys)


def test_unknown_bus_is_named():
    f = two_bus()
    f.lines[0].bus2 = "nowhere"
    with pytest.raises(UnknownBusError, match="nowhere"):
        f.validate()


def test_phase_mismatch_is_named():
    f = two_bus()
    f.lines[0].nodes2 = (2,)
    with pytest.raises(PhaseMismatchError, match="l1"):
        f.validate()
    f = two_bus()
    f.lines[0].z_ohm = np.eye(2, dtype=complex)
    with pytest.raises(PhaseMismatchError, match="z_ohm"):
        f.validate()


def test_non_positive_impedance_is_named():
    with pytest.raises(NonPositiveImpedanceError, match="l1"):
        two_bus(zline=complex(-1.0, 1.0))


def test_islanded_section_is_named():
    f = two_bus()
    f.buses["b"] = Bus("b", (1,), 7.2)
    f.loads.append(Load("ld_b", "b", (1, 0), 1, 10.0, 0.0, 7.2))
    f.lines.append(Line("island", "b", (1,), "b", (1,), np.array([[complex(1, 1)]])))
    with pytest.raises(IslandedSectionError, match="b"):
        build_network(f.validate())


def test_non_convergence_raises_named_error_not_nan():
    f = two_bus(load_model=1, kw=60000.0, kvar=30000.0)  # far beyond the line's maximum transfer
    f.loads[0].vmin_pu, f.loads[0].vlow_pu = 0.02, 0.01  # keep it constant-power (no Z fallback)
    with pytest.raises(PowerFlowNotConverged) as err:
        solve(build_network(f), max_iter=50)
    assert err.value.iterations >= 50  # the fixed point's 50, then the Newton fallback's
    assert "Newton fallback failed too" in str(err.value) and np.isfinite(err.value.mismatch)


def test_unsupported_element_is_reported_by_name(tmp_path, feeders_dir):
    dss_file = tmp_path / "with_pv.dss"
    dss_file.write_text(
        f'redirect "{(feeders_dir / "ieee13" / "IEEE13Nodeckt.dss").resolve()}"\n'
        "new pvsystem.roof1 phases=1 bus1=675.1 kv=2.4 kva=10 pmpp=10 model=2\n")
    with pytest.raises(UnsupportedElementError) as err:
        load_dss(dss_file)
    assert err.value.names[0].startswith("pvsystem.roof1 (model=2")


@pytest.mark.opendss
@pytest.mark.parametrize("path", ["ieee13/IEEE13Nodeckt.dss", "ieee37/ieee37.dss", "ieee123/IEEE123Master.dss",
                                  "ieee8500/Master.dss", "ieee4/4bus-yd-bal/4Bus-YD-Bal.DSS",
                                  "ieee4/4bus-dy-bal/4Bus-DY-Bal.DSS", "ieee4/4bus-oyod-unbal/4bus-OYOD-UnBal.dss"])
def test_transformer_and_capacitor_yprims_match_opendss(feeders_dir, path):
    """Our transformer model (wye/delta, 1-phase, 3-winding centre-tap) equals the engine's Yprim."""
    import opendssdirect as dss

    compile_dss(feeders_dir / path)
    feeder, _ = feeder_from_engine()
    for tr in feeder.transformers:
        dss.Circuit.SetActiveElement(f"transformer.{tr.name}")
        ref = _yprim()
        _, mine = transformer_yprim(tr)
        assert np.max(np.abs(ref - mine)) <= 1e-9 * np.max(np.abs(ref)), tr.name
    for cap in feeder.capacitors:
        dss.Circuit.SetActiveElement(f"capacitor.{cap.name}")
        ref = _yprim()
        _, mine = capacitor_yprim(cap, feeder.base_frequency_hz)
        assert np.max(np.abs(ref - mine)) <= 1e-9 * np.max(np.abs(ref)), cap.name


def test_non_snapshot_mode_is_refused(tmp_path, feeders_dir):
    from market.network.errors import OpenDSSImportError

    dss_file = tmp_path / "daily.dss"
    dss_file.write_text(f'redirect "{(feeders_dir / "ieee13" / "IEEE13Nodeckt.dss").resolve()}"\nset mode=daily\n')
    with pytest.raises(OpenDSSImportError, match="snapshot"):
        load_dss(dss_file)


def test_incremental_rebuild_equals_full_build(feeders_dir):
    feeder, _ = load_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    net = build_network(feeder)
    feeder.transformer("reg2").windings[1].tap_pu = 1.0125
    feeder.capacitors[0].states = [0]
    fresh = build_network(feeder)
    inc = build_network(feeder, previous=net, changed={("transformer", "reg2"), ("capacitor", feeder.capacitors[0].name)})
    assert abs(inc.y - fresh.y).max() == 0.0
    assert abs(inc.y - net.y).max() > 0.0


def test_single_phase_transformer_yprim_hand_computed():
    """1-phase 7.2 kV / 240 V, 50 kVA, %r = 1 + 1, X = 2 %: shorted-secondary admittance seen from
    the primary is 1/Zsc with Zsc = (0.02 + j0.02)·7200²/50 kVA, and the open-circuit voltage ratio
    is 7200/240 (no-load branch off)."""
    from market.network.model import Transformer, Winding

    tr = Transformer("t", 1, [Winding("a", (1, 0), "wye", 7.2, 50.0, 1.0), Winding("b", (1, 0), "wye", 0.24, 50.0, 1.0)],
                     [2.0], ppm_antifloat=0.0)
    _, y = transformer_yprim(tr)
    zsc = complex(0.02, 0.02) * 7200.0 ** 2 / 50e3
    assert abs(y[0, 0] - 1 / zsc) < 1e-9 * abs(1 / zsc)
    # open secondary: I2 = 0 → V2 = −y21/y22 · V1
    assert abs(-y[2, 0] / y[2, 2] - 240.0 / 7200.0) < 1e-12
    tr.windings[1].tap_pu = 1.05  # a 1.05 tap on winding 2 raises the open-circuit secondary voltage 5 %
    _, y = transformer_yprim(tr)
    assert abs(-y[2, 0] / y[2, 2] - 240.0 * 1.05 / 7200.0) < 1e-12
