"""GatewayCore scenarios: control validation, fail-safe, override, exact aggregation, switching
frequency against binomial bounds, determinism. Tables of cycle inputs and expected outputs."""
import math

import pytest

from edge_agent.device import ConstantDevice, FakeDevice, ThermostaticDevice
from edge_agent.gateway import ControlError, GatewayCore, UnknownDevice
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.states import DF, DR, EF, ER, N_STATES

FAST = AgentParams(k=3, t_ef_s=10, t_ev_s=4, t_df_s=6, t_dv_s=2, fail_safe_s=10)


def equal_share_gateway(n, params=FAST, seed=3, rated_w=1200):
    devs = [ConstantDevice("d%04d" % i, rated_w, (1 / 3, 1 / 3, 1 / 3)) for i in range(n)]
    return GatewayCore("gw", devs, params=params, seed=seed)


# -- control vector ---------------------------------------------------------------------------
CONTROL_TABLE = [
    # (p_on, p_off, error prefix or None, p_on in force, p_off in force)
    ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], None, [0.1, 0.2, 0.3], [0.4, 0.5, 0.0]),
    ((0, 1, 1), (1, 1, 1), None, [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]),
    ([-0.5, 1.5, 0.5], [2.0, -1.0, 0.0], None, [0.0, 1.0, 0.5], [1.0, 0.0, 0.0]),
    ([0.1, 0.2], [0.0, 0.0, 0.0], "p_on: expected 3 values", None, None),
    ([0.1, 0.2, 0.3], [0.0] * 4, "p_off: expected 3 values", None, None),
    ([0.1, None, 0.3], [0.0] * 3, r"p_on\[1\]: expected a number", None, None),
    ([0.1, 0.2, 0.3], [0.0, 0.0, float("nan")], r"p_off\[2\]", None, None),
    ("0.1,0.2,0.3", [0.0] * 3, "p_on: expected a list", None, None),
    ([0.1, 0.2, 0.3], {"a": 1}, "p_off: expected a list", None, None),
]


@pytest.mark.parametrize("p_on,p_off,error,want_on,want_off", CONTROL_TABLE)
def test_apply_control(p_on, p_off, error, want_on, want_off):
    core = equal_share_gateway(2)
    core.apply_control([0.5] * 3, [0.5] * 3, 1000)
    if error is None:
        core.apply_control(p_on, p_off, 3000)
        assert (core.p_on, core.p_off, core.last_valid_ms) == (want_on, want_off, 3000)
        assert core.control_in_force(3000) == (want_on, want_off, False)
    else:
        with pytest.raises(ControlError, match="^" + error):
            core.apply_control(p_on, p_off, 3000)
        assert (core.p_on, core.p_off, core.last_valid_ms) == ([0.5] * 3, [0.5, 0.5, 0.0], 1000)


def test_black_never_disabled_whatever_p_off_says():
    core = equal_share_gateway(100)
    for r in range(60):
        core.apply_control([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], r * 2000)
        agg = core.step(r * 2000)
        assert agg.count[2][DF] == agg.count[2][DR] == 0
        assert agg.w[2][EF] + agg.w[2][ER] == 100 * 400
    assert agg.count[0][DR] + agg.count[0][DF] == 100  # green went off, so p_off was live


# -- fail-safe --------------------------------------------------------------------------------
FAILSAFE_TABLE = [
    # (times of valid vectors, round time, fail-safe expected)
    ([], 0, True),                 # no vector yet since start
    ([0], 0, False),
    ([0], 9998, False),
    ([0], 10000, True),            # exactly fail_safe_s without a vector
    ([0, 8000], 17999, False),
    ([0, 8000], 18000, True),
]


@pytest.mark.parametrize("vectors,now,expected", FAILSAFE_TABLE)
def test_failsafe_timing(vectors, now, expected):
    core = equal_share_gateway(1)
    for t in vectors:
        core.apply_control([0.0] * 3, [1.0, 1.0, 0.0], t)
    core.step(now)
    assert core.failsafe_active is expected
    assert core.control_in_force(now)[2] is expected


def test_failsafe_reenables_disabled_demand_after_timers():
    core = equal_share_gateway(50)
    core.apply_control([0.0] * 3, [1.0, 1.0, 0.0], 0)
    core.step(0)  # green and yellow all EF -> DR (6..8 s)
    assert core.aggregate().disabled_w() == 50 * 800
    for t in range(2000, 10000, 2000):  # refreshed: stays disabled
        core.apply_control([0.0] * 3, [0.0] * 3, t)
        core.step(t)
    assert core.aggregate().enabled_w() == 50 * 400
    t = 8000
    while t < 18000:  # silence from 8 s: fail-safe from 18 s
        t += 2000
        core.step(t)
        assert not core.failsafe_active or t >= 18000
    assert core.failsafe_active and core.aggregate().disabled_w() == 0
    assert core.aggregate().count[0][ER] == 50  # all switched back on: refractory ER


# -- override ---------------------------------------------------------------------------------
def test_override_scenario():
    """Cycle table: (time, action, expected states of d0001's three slices after it)."""
    core = equal_share_gateway(2)
    script = [
        (0, ("control", [0.0] * 3, [1.0, 1.0, 1.0]), [DR, DR, EF]),
        (1000, ("override", 11000), [ER, ER, ER]),
        (2000, ("control", [0.0] * 3, [1.0, 1.0, 1.0]), [ER, ER, ER]),
        (10000, ("control", [1.0] * 3, [1.0, 1.0, 1.0]), [ER, ER, ER]),
        (12000, ("control", [0.0] * 3, [1.0, 1.0, 1.0]), [DR, DR, EF]),  # released, then switched
        (14000, ("override", 14000), [ER, ER, ER]),  # ends at the next round...
        (16000, ("control", [0.0] * 3, [0.0] * 3), [EF, EF, EF]),  # ... and is released there
    ]
    for t, action, expected in script:
        if action[0] == "control":
            core.apply_control(action[1], action[2], t)
            core.step(t)
        else:
            core.override("d0001", action[1])
        got = [row[2] for row in core.slice_table() if row[0] == "d0001"]
        assert got == expected, (t, action, got)
        if expected == [ER, ER, ER]:
            assert core.overridden() == ["d0001"]
    with pytest.raises(UnknownDevice, match="^device_id: 'x'"):
        core.override("x", 1)
    with pytest.raises(ValueError, match="^until_ms:"):
        core.override("d0001", 1.5)


def test_overridden_device_is_served_in_full():
    dev = FakeDevice("a", (0.5, 0.5, 0.0), 1000)
    core = GatewayCore("gw", [dev], params=FAST)
    core.apply_control([0.0] * 3, [1.0] * 3, 0)
    core.step(0)
    assert dev.writes[-1] == (0, 0)
    core.override("a", 100000)
    core.apply_control([0.0] * 3, [1.0] * 3, 2000)
    core.step(2000)
    assert dev.writes[-1] == (2000, 1000)


# -- aggregation ------------------------------------------------------------------------------
def test_aggregation_sums_exactly():
    """Random demands and shares; after each round the aggregate equals an independent sum over
    slice_table, every device's slices add up to its demand, and the enabled watts equal what
    the devices were told (input -> process -> output)."""
    rng = Prng(99)
    devs = []
    for i in range(40):
        raw = [rng.below(5) for _ in range(3)]
        raw[rng.below(3)] += 1
        shares = tuple(x / sum(raw) for x in raw)
        demands = [rng.below(20000) for _ in range(60)]
        devs.append(FakeDevice("dev%02d" % i, shares, demands))
    core = GatewayCore("gw", devs, params=FAST, seed=5)
    for r in range(60):
        t = r * 2000
        p = [rng.random() for _ in range(6)]
        core.apply_control(p[:3], p[3:], t)
        agg = core.step(t)
        w = [[0] * N_STATES for _ in range(3)]
        count = [[0] * N_STATES for _ in range(3)]
        per_device, enabled = {}, {}
        for dev_id, tier, state, _end, _held, sw in core.slice_table():
            w[tier][state] += sw
            count[tier][state] += 1
            per_device[dev_id] = per_device.get(dev_id, 0) + sw
            enabled[dev_id] = enabled.get(dev_id, 0) + (sw if state in (EF, ER) else 0)
        assert agg.w == w and agg.count == count and agg.ts_ms == t
        for d in devs:
            assert per_device[d.device_id] == d._demands[r]
            assert d.writes[-1] == (t, enabled[d.device_id])
        assert agg.total_w() == sum(d._demands[r] for d in devs)
        assert agg.enabled_w() == sum(enabled.values())
        assert agg.kw[1][EF] == agg.w[1][EF] / 1000


# -- switching frequency ----------------------------------------------------------------------
def within_binomial(k, n, p, z=4.5):
    sd = math.sqrt(n * p * (1 - p))
    return abs(k - n * p) <= z * sd + 1e-9


@pytest.mark.parametrize("p_off", [(0.1, 0.3, 0.9), (0.02, 0.5, 0.0), (0.7, 0.05, 0.5)])
def test_first_round_switch_off_is_binomial(p_off):
    n = 1500
    core = equal_share_gateway(n, seed=int(p_off[0] * 1000))
    core.apply_control([0.0] * 3, list(p_off), 0)
    agg = core.step(0)
    for i, p in enumerate(p_off[:2]):
        assert within_binomial(agg.count[i][DR], n, p), (i, agg.count[i][DR], n * p)
    assert agg.count[2][DR] == 0  # black: forced to 0 whatever p_off says


@pytest.mark.parametrize("p_on", [0.05, 0.2, 0.6])
def test_switch_on_of_disabled_flexible_is_binomial(p_on):
    n = 1500
    core = equal_share_gateway(n, seed=17)
    core.apply_control([0.0] * 3, [1.0, 1.0, 0.0], 0)
    core.step(0)  # green, yellow -> DR, ending within 6..8 s
    core.apply_control([0.0] * 3, [0.0] * 3, 8000)
    core.step(8000)  # all DR -> DF, nothing switches on
    assert core.aggregate().count[0][DF] == n
    core.apply_control([p_on, p_on, 0.0], [0.0] * 3, 10000)
    agg = core.step(10000)
    for i in (0, 1):
        assert within_binomial(agg.count[i][ER], n, p_on), (i, agg.count[i][ER])


def test_steady_state_switching_rates_match_probabilities():
    """Pooled over 150 rounds: switch-offs / EF slices at round start ~ p_off and
    switch-ons / DF slices ~ p_on (binomial bounds on the pooled counts)."""
    n = 300
    p_on, p_off = (0.15, 0.08, 0.3), (0.12, 0.04, 0.0)
    core = equal_share_gateway(n, seed=23)
    trials_off, trials_on = [0, 0, 0], [0, 0, 0]
    succ_off, succ_on = [0, 0, 0], [0, 0, 0]
    prev = [row[2] for row in core.slice_table()]
    for r in range(150):
        t = r * 2000
        core.apply_control(list(p_on), list(p_off), t)
        # which slices are flexible this round (after step 1, timers)
        before = [(row[1], row[2] if row[3] > t else {ER: EF, DR: DF}.get(row[2], row[2]))
                  for row in core.slice_table()]
        core.step(t)
        after = [row[2] for row in core.slice_table()]
        for (tier, s0), s1 in zip(before, after):
            if s0 == EF:
                trials_off[tier] += 1
                succ_off[tier] += s1 == DR
            elif s0 == DF:
                trials_on[tier] += 1
                succ_on[tier] += s1 == ER
        prev = after
    for i in range(3):
        assert trials_off[i] > 1000 and within_binomial(succ_off[i], trials_off[i], p_off[i])
        if trials_on[i]:
            assert within_binomial(succ_on[i], trials_on[i], p_on[i])
    assert trials_on[0] > 1000 and trials_on[1] > 500 and succ_off[2] == 0
    assert len(prev) == 3 * n


# -- determinism and errors -------------------------------------------------------------------
def run_tables(seed, rounds=60):
    devs = [ConstantDevice("c%d" % i, 1000 + i, (0.5, 0.3, 0.2)) for i in range(8)]
    devs.append(ThermostaticDevice("wh", 4500, (0.8, 0.0, 0.2), deadband_c=0.1, theta0_c=54.96,
                                   c_j_per_c=50000))
    core = GatewayCore("gw", devs, params=FAST, seed=seed)
    out = []
    for r in range(rounds):
        core.apply_control([0.3, 0.2, 0.1], [0.3, 0.2, 0.1], r * 2000)
        core.step(r * 2000)
        out.append(core.slice_table())
    return out


def test_deterministic_for_a_seed():
    assert run_tables(4) == run_tables(4)
    assert run_tables(4) != run_tables(5)


def test_devices_sorted_and_errors_named():
    core = GatewayCore("gw", [ConstantDevice("b", 1, (1.0, 0.0, 0.0)),
                              ConstantDevice("a", 1, (0.0, 0.0, 1.0))])
    assert [d.device_id for d in core.devices] == ["a", "b"]
    assert [(row[0], row[1]) for row in core.slice_table()] == [("a", 2), ("b", 0)]
    assert core.inventory()["devices"][0]["device_id"] == "a"
    assert core.inventory()["params"]["fail_safe_s"] == 60
    with pytest.raises(ValueError, match="^device_id: duplicate 'a'"):
        GatewayCore("gw", [ConstantDevice("a", 1, (1.0, 0.0, 0.0))] * 2)
    with pytest.raises(ValueError, match=r"^x.tier_shares: expected 3"):
        GatewayCore("gw", [ConstantDevice("x", 1, (1.0,))])
    core.step(5000)
    with pytest.raises(ValueError, match="^now_ms: 4999 is before"):
        core.step(4999)
    with pytest.raises(ValueError, match="^now_ms: expected int"):
        core.step(6000.0)


def test_bad_device_reading_keeps_last_good_value():
    dev = FakeDevice("a", (1.0, 0.0, 0.0), [700, -5, "x", 900])
    core = GatewayCore("gw", [dev], params=FAST)
    readings = []
    for r in range(4):
        core.step(r * 2000)
        readings.append(core.aggregate().enabled_w())
    assert readings == [700, 700, 700, 900]
    assert core.read_errors == 2 and core.last_error.startswith("a: read_w: expected int")


def test_thermostatic_device_in_a_gateway_cools_when_shed():
    wh = ThermostaticDevice("wh", 4500, (1.0, 0.0, 0.0), theta0_c=53.5, c_j_per_c=83700)
    core = GatewayCore("gw", [wh], params=AgentParams(t_df_s=600, t_dv_s=0))
    core.apply_control([1.0] * 3, [0.0] * 3, 0)
    core.step(0)
    core.step(2000)
    heated = wh.theta_mc
    assert heated > 53500 and core.aggregate().w[0][EF] == 4500
    core.apply_control([0.0] * 3, [1.0] * 3, 4000)
    core.step(4000)
    assert core.aggregate().w[0][DR] == 4500
    at_shed = wh.theta_mc
    for r in range(3, 30):
        core.apply_control([0.0] * 3, [1.0] * 3, r * 2000)
        core.step(r * 2000)
        assert wh.served_w == 0
    # integrated from 4 s to 58 s with nothing served: only the loss acts,
    # dtheta/dt = -UA (theta - amb) / C with UA = 3 W/degC, C = 83 700 J/degC, amb = 20 degC
    expected_mc = at_shed - 3 * (at_shed / 1000 - 20) * 54 / 83700 * 1000
    assert abs(wh.theta_mc - expected_mc) <= 2, (wh.theta_mc, expected_mc)
