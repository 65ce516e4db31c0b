"""Why IEEE 13's rg60 case ends `stalled` (issue 15): the regulator's output voltage is a step
function of the schedule. At 0.85 of the load the regulator (LDC R=3, X=9) holds rg60 at ~1.056 pu;
the linearisation holds the taps, so dV/dP at rg60 is ~1e-7 pu/kW: no lever. In the AC power flow
with the regulator acting, enough injection downstream (≥ ~900 kW at 671) lowers the current through
it, and its LDC steps the tap down by one step (0.00625 pu): rg60 drops below 1.05 pu at once. A
discrete control response the linear model cannot see (non-convex); documented in docs/market.md."""
from __future__ import annotations

from market.lem.ac_flow import ACPowerFlow
from market.lem.network_data import interval_network, nodes_by_bus

from tests.market.lem.conftest import IEEE13


def test_regulator_output_voltage_moves_only_by_tap_steps():
    from market.network import load_dss

    ac = ACPowerFlow(load_dss(IEEE13)[0])
    base = ac.solve(0, 0.85)
    i = base.snapshot.index_of("rg60.1")
    assert base.snapshot.v_pu[i] > 1.05  # the violation the iteration cannot relieve
    iv = interval_network(base.result, base.snapshot, ac.locations, nodes_by_bus(ac.locations),
                          ac.nominal_load_kw * 0.85, None, 0.0, 0.0, [], ["rg60.1"])
    step = 0.00625
    for kw, moved in ((150.0, False), (300.0, True)):
        inj = ac.injections_of({"671.1": kw, "671.2": kw, "671.3": kw})
        ac_point = ac.solve(1, 0.85, inj)
        v_lin = base.snapshot.v_pu[i] + float(iv.dv_dp[0] @ inj)
        assert abs(v_lin - base.snapshot.v_pu[i]) < 1e-3  # the linear model: no lever
        dv = ac_point.snapshot.v_pu[i] - base.snapshot.v_pu[i]
        if moved:  # one tap step down: rg60 inside its limit
            assert ac_point.taps["reg1"] == base.taps["reg1"] - step or abs(ac_point.taps["reg1"] - base.taps["reg1"] + step) < 1e-12
            assert ac_point.snapshot.v_pu[i] < 1.05 and dv < -0.5 * step
        else:  # inside the regulator's band: no tap move, no voltage change
            assert ac_point.taps == base.taps and abs(dv) < 1e-3
