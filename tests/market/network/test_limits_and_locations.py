"""Ratings, voltage limits, loading and violations on hand-computed cases; location ids in the API."""
from __future__ import annotations

import numpy as np
import pytest

from market.network.api import FakeNetworkModel, FeederNetwork
from market.network.errors import InvalidLimitError, UnknownBusError
from market.network.locations import UnknownLocationError, branch_id, parse_branch_id
from market.network.model import Bus, Feeder, Line, Load, Source, UnknownElementError
from market.network.snapshot import CurrentsUnavailableError
from vocab.location import LocationError

E_V = 7200.0
Z_SRC = complex(0.01, 0.05)
Z_LINE = complex(0.5, 1.0)
S_LOAD_VA = complex(300e3, 100e3)


def two_bus(norm_amps: float = 0.0, emerg_amps: float = 0.0) -> Feeder:
    """Source → 1-phase line → constant-impedance load at 7.2 kV: I = E / (Zs + Zl + Zload)."""
    zs = np.diag([Z_SRC] * 3)
    buses = {"src": Bus("src", (1, 2, 3), 7.2), "a": Bus("a", (1,), 7.2)}
    line = Line("l1", "src", (1,), "a", (1,), np.array([[Z_LINE]]), norm_amps=norm_amps, emerg_amps=emerg_amps)
    load = Load("ld", "a", (1, 0), 1, S_LOAD_VA.real / 1e3, S_LOAD_VA.imag / 1e3, 7.2, "wye", 2)
    return Feeder("two_bus", buses, Source("s", "src", 7.2 * np.sqrt(3), zs), [line], loads=[load]).validate()


def hand_current_a() -> complex:
    z_load = E_V ** 2 / np.conj(S_LOAD_VA)
    return E_V / (Z_SRC + Z_LINE + z_load)


def hand_v_a_pu() -> float:
    z_load = E_V ** 2 / np.conj(S_LOAD_VA)
    return abs(hand_current_a() * z_load) / E_V


def test_current_and_loading_hand_computed():
    i_amps = abs(hand_current_a())
    fn = FeederNetwork(two_bus(norm_amps=0.8 * i_amps, emerg_amps=1.25 * i_amps))
    snap = fn.solve()
    assert snap.lines == [("line.l1", 1)] and snap.branch_ids == ["line.l1.1"]
    assert snap.i_amps[0] == pytest.approx(i_amps, rel=1e-9)
    assert snap.i_to_amps[0] == pytest.approx(i_amps, rel=1e-9)  # no shunt: same current at both ends
    assert snap.loading_pct[0] == pytest.approx(125.0, rel=1e-8)
    assert snap.emerg_loading_pct[0] == pytest.approx(80.0, rel=1e-8)
    assert snap.loading("line.l1.1") == pytest.approx(125.0, rel=1e-8)
    (over,) = snap.overloaded_branches()
    assert over.branch_id == "line.l1.1" and over.rating == "norm"
    assert over.i_amps == pytest.approx(i_amps, rel=1e-9) and over.rating_amps == pytest.approx(0.8 * i_amps)
    assert snap.overloaded_branches(emergency=True) == []


def test_unrated_branch_has_no_loading_and_is_never_overloaded():
    snap = FeederNetwork(two_bus()).solve()
    assert not snap.rated[0] and snap.loading_pct[0] == 0.0 and np.all(np.isfinite(snap.loading_pct))
    assert snap.loading("line.l1.1") is None and snap.loading(("line.l1", 1), emergency=True) is None
    assert snap.overloaded_branches() == [] and snap.overloaded_branches(emergency=True) == []


def test_rating_override_applies_from_the_next_solve():
    fn = FeederNetwork(two_bus())
    i_amps = abs(hand_current_a())
    fn.set_rating("line.l1", norm_amps=2.0 * i_amps)
    assert fn.solve().loading("line.l1.1") == pytest.approx(50.0, rel=1e-8)
    assert fn.feeder.lines[0].norm_amps == pytest.approx(2.0 * i_amps) and fn.feeder.lines[0].emerg_amps == 0.0
    fn.set_rating("line.l1", norm_amps=0.0)
    assert fn.solve().loading("line.l1.1") is None
    with pytest.raises(InvalidLimitError, match="norm_amps"):
        fn.set_rating("line.l1", norm_amps=-1.0)
    with pytest.raises(InvalidLimitError, match="emerg_amps"):
        fn.set_rating("line.l1", emerg_amps=float("nan"))
    with pytest.raises(UnknownElementError, match="nope"):
        fn.set_rating("line.nope", norm_amps=1.0)
    with pytest.raises(UnknownElementError, match="winding"):
        fn.set_rating("line.l1", norm_amps=1.0, winding=1)


def test_transformer_rating_needs_a_winding(feeders_dir):
    fn = FeederNetwork.from_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    with pytest.raises(UnknownElementError, match="winding"):
        fn.set_rating("transformer.xfm1", norm_amps=10.0)
    fn.set_rating("transformer.xfm1", norm_amps=1e6, winding=1)
    fn.set_rating("transformer.xfm1", norm_amps=1e6, winding=2)
    snap = fn.solve()
    row = snap.line_index("transformer.xfm1.1")
    assert snap.norm_amps[row] == 1e6 and snap.loading_pct[row] < 0.1
    assert all(not o.branch_id.startswith("transformer.xfm1") for o in snap.overloaded_branches())


def test_voltage_limits_default_override_and_violations():
    v_a = hand_v_a_pu()
    fn = FeederNetwork(two_bus())
    assert all((b.v_min_pu, b.v_max_pu) == (0.95, 1.05) for b in fn.feeder.buses.values())
    snap = fn.solve()
    i = snap.index_of("a.1")
    assert snap.v_pu[i] == pytest.approx(v_a, rel=1e-8)
    expected_default = [] if 0.95 <= v_a <= 1.05 else ["a.1"]
    assert [v.location for v in snap.voltage_violations()] == expected_default
    fn.set_voltage_limits(v_min_pu=v_a + 0.001, buses=["a"])  # per bus
    (viol,) = fn.solve().voltage_violations()
    assert (viol.location, viol.side, viol.v_min_pu, viol.v_max_pu) == ("a.1", "under", v_a + 0.001, 1.05)
    fn.set_voltage_limits(v_min_pu=0.5, v_max_pu=v_a - 0.001)  # global
    viols = fn.solve().voltage_violations()
    assert "a.1" in [v.location for v in viols] and all(v.side == "over" for v in viols)
    with pytest.raises(InvalidLimitError, match="v_min_pu < v_max_pu"):
        fn.set_voltage_limits(v_min_pu=1.1, v_max_pu=1.0)
    with pytest.raises(UnknownBusError, match="zz"):
        fn.set_voltage_limits(v_min_pu=0.9, buses=["zz"])


def test_neutral_nodes_are_not_voltage_checked():
    f = two_bus()
    f.buses["a"] = Bus("a", (1, 4), 7.2)  # node 4: a neutral conductor, near 0 V
    f.loads[0].nodes = (1, 4)
    f.lines[0] = Line("l1", "src", (1, 0), "a", (1, 4), np.array([[Z_LINE, 0.1], [0.1, Z_LINE]]))
    snap = FeederNetwork(f.validate()).solve()
    assert snap.v_pu[snap.index_of("a.4")] < 0.5
    assert "a.4" not in [v.location for v in snap.voltage_violations()]


@pytest.mark.parametrize("element,node,text", [("line.650632", 1, "line.650632.1"),
                                               ("transformer.Sub", 2, "transformer.sub.2"),
                                               ("line.650632", None, "line.650632")])
def test_branch_ids(element, node, text):
    assert branch_id(element, node) == text
    assert parse_branch_id(text) == (element.lower(), node)


@pytest.mark.parametrize("text", ["line", "line.", "line.x.y", "line.x.1.2", "671.1.x"])
def test_malformed_branch_ids_are_refused(text):
    with pytest.raises(LocationError):
        parse_branch_id(text)


def test_location_ids_in_the_feeder_api(feeders_dir):
    fn = FeederNetwork.from_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    ids = fn.location_ids()
    assert ids[:3] == ["sourcebus.1", "sourcebus.2", "sourcebus.3"] and len(ids) == len(fn.nodes()) == 41
    assert [f"{b}.{k}" for b, k in fn.nodes()] == ids
    assert fn.index_of("671.2") == fn.net.index[("671", 2)] == fn.index_of(("671", 2))
    assert fn.net.locations.indices_of("675") == [fn.net.index[("675", k)] for k in (1, 2, 3)]
    assert fn.net.locations.indices_of("652") == [fn.net.index[("652", 1)]]  # a 1-phase bus
    with pytest.raises(UnknownLocationError):
        fn.index_of("675.9")
    with pytest.raises(KeyError):  # UnknownLocationError is a KeyError, as the tuple index was
        fn.index_of(("nowhere", 1))
    with pytest.raises(LocationError, match="whole bus"):
        fn.index_of("675")
    assert "line.650632.1" in fn.branch_ids() and ("line.650632", 1) in fn.lines()


def test_set_injection_by_location_equals_by_tuple(feeders_dir):
    path = feeders_dir / "ieee13/IEEE13Nodeckt.dss"
    by_tuple, by_id, by_bus = (FeederNetwork.from_dss(path) for _ in range(3))
    for k in (1, 2, 3):
        by_tuple.set_injection("675", k, 100.0, 30.0)
        by_id.set_injection(f"675.{k}", p_kw=100.0, q_kvar=30.0)
    by_bus.set_injection("675", p_kw=300.0, q_kvar=90.0)  # a whole bus: equal shares on its phases
    a, b, c = by_tuple.solve(), by_id.solve(), by_bus.solve()
    assert np.array_equal(a.v_pu, b.v_pu) and np.array_equal(a.v_pu, c.v_pu)
    assert np.array_equal(by_tuple.s_inject_va, by_bus.s_inject_va)
    with pytest.raises(TypeError, match="p_kw"):
        by_id.set_injection("675.1")
    with pytest.raises(TypeError, match="node must be an int"):
        by_id.set_injection("675.1", 100.0)  # a power in the node's place
    sens = by_id.sensitivities(["675.1", ("675", 2)], ["line.692675.1"], ["611.3"])
    assert sens.injections == [("675", 1), ("675", 2)] and sens.lines == [("line.692675", 1)]
    assert sens.injection_locations == ["675.1", "675.2"] and sens.voltage_locations == ["611.3"]
    assert sens.line_ids == ["line.692675.1"]


def test_linear_model_says_it_has_no_currents():
    nodes = [("a", 1), ("b", 1)]
    fake = FakeNetworkModel(nodes, [("line.ab", 1)], ptdf=[[0.0, -1.0]], dv_dp=[[0.0, 0.0], [0.0, 1e-4]],
                            base_flow_kw=[100.0], base_v_pu=[1.0, 0.97], loss_factor=[0.0, -0.05], v_min_pu=0.975)
    assert fake.location_ids() == ["a.1", "b.1"]
    fake.set_injection("b.1", p_kw=40.0)
    snap = fake.solve()
    assert snap.line_p_kw[snap.line_index("line.ab.1")] == 60.0
    assert not snap.has_currents and snap.i_amps is None and snap.loading_pct is None
    with pytest.raises(CurrentsUnavailableError):
        snap.overloaded_branches()
    with pytest.raises(CurrentsUnavailableError):
        snap.loading("line.ab.1")
    (viol,) = snap.voltage_violations()  # 0.97 + 1e-4·40 = 0.974 < 0.975
    assert viol.location == "b.1" and viol.side == "under" and viol.v_pu == pytest.approx(0.974)
    sens = fake.sensitivities(["b.1"], ["line.ab.1"], ["b.1"])
    assert sens.ptdf[0, 0] == -1.0 and sens.dv_dp[0, 0] == 1e-4
