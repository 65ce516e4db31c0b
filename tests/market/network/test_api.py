"""The market-facing NetworkModel: injections, warm re-solves without refactorization, sensitivities."""
from __future__ import annotations

import numpy as np

from market.network.api import FakeNetworkModel, FeederNetwork, NetworkModel
from market.network.model import Generator


def test_feeder_network_injection_equals_a_generator(feeders_dir):
    """An injection set through the API equals the same DER modelled as a generator element."""
    fn = FeederNetwork.from_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    assert isinstance(fn, NetworkModel)
    fn.set_injection("675", 1, 150.0, 20.0)
    snap = fn.solve()
    lu_before = fn.net.lu
    kv = fn.net.vbase_v[fn.net.index[("675", 1)]] / 1000.0
    fn.feeder.generators.append(Generator("g", "675", (1, 0), 1, 150.0, 20.0, kv, vmin_pu=0.0, vmax_pu=10.0))
    other = FeederNetwork(fn.feeder).solve()
    assert np.max(np.abs(snap.v_pu - other.v_pu)) < 1e-8
    assert abs(snap.losses_kw - other.losses_kw) < 1e-6
    fn.set_load("671", 1000.0, 400.0)
    again = fn.solve()
    assert fn.net.lu is lu_before  # same factorization, warm start
    assert again.v_pu[fn.net.index[("671", 1)]] > snap.v_pu[fn.net.index[("671", 1)]]


def test_sensitivities_with_injections_match_finite_difference(feeders_dir):
    fn = FeederNetwork.from_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    fn.set_injection("652", 1, 200.0)
    fn.solve()
    key = ("652", 1)
    sens = fn.sensitivities([key], [("line.650632", 1)], [key])
    h = 3.0
    fn.set_injection("652", 1, 200.0 + h)
    up = fn.solve()
    fn.set_injection("652", 1, 200.0 - h)
    down = fn.solve()
    i = fn.net.index[key]
    assert abs((up.v_pu[i] - down.v_pu[i]) / (2 * h) - sens.dv_dp[0, 0]) < 1e-8
    row = up.lines.index(("line.650632", 1))
    assert abs((up.line_p_kw[row] - down.line_p_kw[row]) / (2 * h) - sens.ptdf[0, 0]) < 1e-4


def test_fake_network_model_is_linear():
    nodes = [("a", 1), ("b", 1)]
    fake = FakeNetworkModel(nodes, [("line.ab", 1)], ptdf=[[0.0, -1.0]], dv_dp=[[0.0, 0.0], [0.0, 1e-4]],
                            base_flow_kw=[100.0], base_v_pu=[1.0, 0.97], loss_factor=[0.0, -0.05])
    assert isinstance(fake, NetworkModel)
    fake.set_injection("b", 1, 40.0)
    snap = fake.solve()
    assert snap.line_p_kw[0] == 60.0 and abs(snap.v_pu[1] - 0.974) < 1e-12
    sens = fake.sensitivities([("b", 1)], [("line.ab", 1)], [("b", 1)])
    assert sens.ptdf[0, 0] == -1.0 and sens.loss_factor_p[0] == -0.05
