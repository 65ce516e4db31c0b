"""Sensitivities (PTDF, dV/dP, dV/dQ, loss factors) against central finite differences of the solver."""
from __future__ import annotations

import numpy as np
import pytest

from market.network.injections import compile_atoms
from market.network.model import Generator
from market.network.opendss_import import load_dss
from market.network.sensitivity import SensitivityModel
from market.network.solver import solve
from market.network.ybus import build_network


def _finite_difference(feeder, net, base, sm, lines, voltages, bus, node, dp_kw, dq_kvar):
    """Solve with an extra constant-power injection (a DER) at bus·node; return flows, |V|, losses."""
    kv = net.vbase_v[net.index[(bus, node)]] / 1000.0
    feeder.generators.append(Generator("fd", bus, (node, 0), 1, dp_kw, dq_kvar, kv, vmin_pu=0.0, vmax_pu=10.0))
    try:
        atoms = compile_atoms(feeder, net.index, net.n)
    finally:
        feeder.generators.pop()
    r = solve(net, atoms=atoms, v0=base.v)
    flows = r.element_powers_va()[[sm._rows[k] for k in lines]].real / 1000.0
    return flows, r.v_pu[[net.index[k] for k in voltages]], r.losses_va().real / 1000.0


@pytest.mark.parametrize("path,seed", [("ieee13/IEEE13Nodeckt.dss", 0), ("ieee123/IEEE123Master.dss", 1),
                                       ("ieee34/ieee34Mod1.dss", 2)])
def test_sensitivities_match_finite_differences(feeders_dir, path, seed):
    feeder, _ = load_dss(feeders_dir / path)
    net = build_network(feeder)
    base = solve(net)
    sm = SensitivityModel(base)
    sens = sm.compute()
    assert sens.ptdf.shape == (len(sens.lines), len(sens.injections))
    assert sens.dv_dp.shape == (len(sens.voltages), len(sens.injections))
    rng = np.random.default_rng(seed)
    h = 3.0  # small enough not to cross a load-model region boundary (e.g. Vmin), large vs noise
    for k in rng.choice(len(sens.injections), 3, replace=False):
        bus, node = sens.injections[k]
        fp = _finite_difference(feeder, net, base, sm, sens.lines, sens.voltages, bus, node, h, 0.0)
        fm = _finite_difference(feeder, net, base, sm, sens.lines, sens.voltages, bus, node, -h, 0.0)
        qp = _finite_difference(feeder, net, base, sm, sens.lines, sens.voltages, bus, node, 0.0, h)
        qm = _finite_difference(feeder, net, base, sm, sens.lines, sens.voltages, bus, node, 0.0, -h)
        assert np.max(np.abs((fp[0] - fm[0]) / (2 * h) - sens.ptdf[:, k])) < 2e-4
        assert np.max(np.abs((qp[0] - qm[0]) / (2 * h) - sens.ptdf_q[:, k])) < 2e-4
        assert np.max(np.abs((fp[1] - fm[1]) / (2 * h) - sens.dv_dp[:, k])) < 1e-7
        assert np.max(np.abs((qp[1] - qm[1]) / (2 * h) - sens.dv_dq[:, k])) < 1e-7
        assert abs((fp[2] - fm[2]) / (2 * h) - sens.loss_factor_p[k]) < 2e-4
        assert abs((qp[2] - qm[2]) / (2 * h) - sens.loss_factor_q[k]) < 2e-4


def test_chosen_rows_equal_the_full_matrices(feeders_dir):
    """A subset request (the market's critical set) returns exactly the matching rows/columns."""
    feeder, _ = load_dss(feeders_dir / "ieee123/IEEE123Master.dss")
    sm = SensitivityModel(solve(build_network(feeder)))
    full = sm.compute()
    lines = full.lines[5:9]
    volts = full.voltages[10:13]
    inj = full.injections[20:60]
    sub = sm.compute(inj, lines, volts)
    assert np.allclose(sub.ptdf, full.ptdf[5:9, 20:60], atol=1e-10)
    assert np.allclose(sub.dv_dq, full.dv_dq[10:13, 20:60], atol=1e-12)
    assert np.allclose(sub.loss_factor_p, full.loss_factor_p[20:60], atol=1e-10)
    assert sub.lines == lines and sub.voltages == volts and sub.injections == inj


def test_ptdf_of_radial_feeder_head_is_about_minus_one(feeders_dir):
    """Injecting 1 kW reduces the feeder-head inflow by ≈ 1 kW − dLosses (voltage-dependent loads
    and regulator losses upstream of the head line make up the small rest)."""
    feeder, _ = load_dss(feeders_dir / "ieee13/IEEE13Nodeckt.dss")
    sm = SensitivityModel(solve(build_network(feeder)))
    head = [("line.650632", k) for k in (1, 2, 3)]
    inj = [("675", 1), ("675", 2), ("675", 3)]
    sens = sm.compute(inj, head, [])
    total = sens.ptdf.sum(axis=0)
    assert np.all(sens.loss_factor_p < 0)  # injecting at the far end relieves losses
    assert np.allclose(total, -1.0 + sens.loss_factor_p, atol=0.03)
