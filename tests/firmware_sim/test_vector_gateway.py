"""VectorGatewayCore (the fleet's `--device-model vector`) against edge_agent.GatewayCore, the
reference: same slices and watts, the same deterministic rounds (p = 0 / 1, timers, black tier,
fail-safe vector), switching shares within binomial bounds of p, and a real agent on it over a
real broker (test_gateway_fleet)."""
import numpy as np

from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.states import DF, DR, EF, ER
from firmware_sim.gateway_fleet import FleetSpec, make_devices
from firmware_sim.vector_gateway import VectorGatewayCore

T0 = 1_700_000_000_000
PARAMS = AgentParams(t_ef_s=10, t_ev_s=4, t_df_s=20, t_dv_s=6)


def _pair(devices):
    return GatewayCore("gw", devices, PARAMS, seed=1), VectorGatewayCore("gw", devices, PARAMS, seed=1)


def _round(core, p_on, p_off, now):
    core.apply_control(p_on, p_off, now)
    core.step(now)
    return core.aggregate()


def test_same_slices_and_watts_as_the_reference():
    spec = FleetSpec("h", 1, gateways=3, devices_per_gateway=50, key=b"k" * 32, thermostatic_fraction=0.0)
    ref, vec = _pair(make_devices(spec, 2))
    a, b = _round(ref, [0, 0, 0], [0, 0, 0], T0), _round(vec, [0, 0, 0], [0, 0, 0], T0)
    assert a.w == b.w and a.count == b.count            # all EF, exactly the reference's W and counts
    assert len(ref.slice_tier) == vec.tier.size


def test_deterministic_rounds_equal_the_reference():
    devices = [ConstantDevice("d%d" % i, 1000 + 100 * i, s)
               for i, s in enumerate([(1, 0, 0), (0.5, 0.5, 0), (0.6, 0.2, 0.2), (0, 0, 1)])]
    ref, vec = _pair(devices)
    script = [([0, 0, 0], [1, 1, 1], T0),              # shed all but black (black p_off forced 0)
              ([0, 0, 0], [0, 0, 0], T0 + 2000),       # hold: everything refractory/DR stays
              ([1, 1, 1], [0, 0, 0], T0 + 19_000),     # DR timers (>= 20 s) not ended yet
              ([1, 1, 1], [0, 0, 0], T0 + 26_000),     # all ended (<= 26 s): DF, switched on -> ER
              ([0, 0, 0], [1, 1, 1], T0 + 30_000),     # ER timers (>= 10 s) running: nothing moves
              ([0, 0, 0], [1, 1, 1], T0 + 40_000)]     # ended (<= 40 s): EF, shed again
    for p_on, p_off, now in script:
        a, b = _round(ref, p_on, p_off, now), _round(vec, p_on, p_off, now)
        assert a.w == b.w and a.count == b.count, now
    assert vec.aggregate().w[2][EF] == 240 + 1300    # black (1200 W x 0.2 + 1300 W): never shed
    assert vec.aggregate().w[0][DR] > 0


def test_switching_share_within_binomial_bounds():
    devices = [ConstantDevice("d%04d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(2000)]
    vec = VectorGatewayCore("gw", devices, PARAMS, seed=5)
    agg = _round(vec, [0, 0, 0], [0.3, 0.6, 0.9], T0)
    n = 2000
    for tier, p in ((0, 0.3), (1, 0.6)):
        got = agg.count[tier][DR]
        assert abs(got - n * p) < 4 * np.sqrt(n * p * (1 - p)), (tier, got)
    assert agg.count[2][DR] == 0
    timers = vec.timer_end_ms[vec.state == DR] - T0
    assert timers.min() >= 20_000 and timers.max() <= 26_000 and len(set(timers.tolist())) > 100
    agg = _round(vec, [0.5, 0.5, 0.5], [0, 0, 0], T0 + 30_000)     # every DR ended -> DF, half on
    on = agg.count[0][ER]
    assert abs(on - 600 * 0.5) < 4 * np.sqrt(600 * 0.25), on
    assert agg.count[0][DF] + on == 600 and agg.count[0][DR] == 0
