"""Devices: exact tier split, the thermostatic device against hand-computed and analytic values."""
import math

import pytest
from hypothesis import given, strategies as st

from edge_agent.device import (ConstantDevice, DeviceError, FakeDevice, ThermostaticDevice,
                               shares_to_ppm, split_w)


@pytest.mark.parametrize("shares,ppm", [
    ((0.5, 0.3, 0.2), [500000, 300000, 200000]),
    ((1 / 3, 1 / 3, 1 / 3), [333333, 333333, 333334]),  # tie: the extra unit goes to black
    ((0.0, 0.0, 1.0), [0, 0, 1000000]),
    ((0.1234567, 0.8765433, 0.0), [123457, 876543, 0]),
])
def test_shares_to_ppm(shares, ppm):
    assert shares_to_ppm(shares, 3) == ppm


@pytest.mark.parametrize("shares,msg", [
    ((0.5, 0.5), "tier_shares: expected 3"), ((0.5, 0.6, 0.0), "tier_shares: fractions must sum"),
    ((1.2, -0.2, 0.0), r"tier_shares\[1\]"), ((0.5, "x", 0.5), r"tier_shares\[1\]"),
])
def test_bad_shares(shares, msg):
    with pytest.raises(DeviceError, match="^" + msg):
        shares_to_ppm(shares, 3)


@pytest.mark.parametrize("total,ppm,parts", [
    (1000, [500000, 300000, 200000], [500, 300, 200]),
    (1, [333333, 333333, 333334], [0, 0, 1]),
    (2, [333333, 333333, 333334], [0, 1, 1]),
    (7201, [500000, 300000, 200000], [3601, 2160, 1440]),  # remainder 0.5 goes to tier 0
])
def test_split_w_table(total, ppm, parts):
    assert split_w(total, ppm) == parts


@given(total=st.integers(0, 10**7), raw=st.lists(st.integers(0, 1000), min_size=1, max_size=6))
def test_split_w_exact_and_within_one_watt(total, raw):
    if sum(raw) == 0:
        raw = raw[:-1] + [1]
    shares = [x / sum(raw) for x in raw]
    ppm = shares_to_ppm(shares, len(shares))
    assert sum(ppm) == 10**6
    parts = split_w(total, ppm)
    assert sum(parts) == total
    assert all(abs(p - total * q / 10**6) < 1 for p, q in zip(parts, ppm))


def test_thermostat_first_interval_hand_computed():
    """4500 W heater, C = 837 kJ/degC, UA = 3 W/degC, 50 degC in 20 degC ambient, 2 s:
    in = 4500 W * 2 s = 9 000 J; out = 3 * 30 * 2 = 180 J; dtheta = 8 820 / 837 000 degC
    = 10.537 m degC -> 10 m degC now, 450 J carried (8 820 000 mJ - 10 * 837 000 mJ)."""
    d = ThermostaticDevice("wh", 4500, (1.0, 0.0, 0.0), theta0_c=50.0)
    assert d.read_w(0) == 4500  # 50 < 55 - 2: calling
    d.write(4500, 0)
    d.read_w(2000)
    assert d.theta_mc == 50010
    assert d._residual_mj == 450000


def test_thermostat_matches_analytic_exponential():
    """Constant served power: theta(t) = theta_inf + (theta0 - theta_inf) exp(-t UA / C),
    theta_inf = amb + P / UA. Setpoint out of reach so the heater keeps calling for 2 h."""
    p_w, ua, c, amb, th0 = 2000, 40.0, 200000, 15.0, 20.0
    d = ThermostaticDevice("wh", p_w, (1.0, 0.0, 0.0), setpoint_c=200.0, ambient_c=amb,
                           ua_w_per_c=ua, c_j_per_c=c, theta0_c=th0)
    for t in range(0, 7200001, 2000):
        assert d.read_w(t) == p_w
        d.write(p_w, t)
    t_s = 7200.0
    inf = amb + p_w / ua
    expected = inf + (th0 - inf) * math.exp(-t_s * ua / c)
    assert abs(d.theta_c - expected) < 0.02, (d.theta_c, expected)


HYSTERESIS = [
    # mode, setpoint, band, theta sequence (degC), expected calling after each
    ("heat", 55.0, 4.0, [56.0, 53.5, 52.9, 54.0, 56.9, 57.1, 55.0], [False, False, True, True, True, False, False]),
    ("cool", 24.0, 1.0, [24.0, 24.6, 24.2, 23.6, 23.4, 24.0], [False, True, True, True, False, False]),
]


@pytest.mark.parametrize("mode,setpoint,band,thetas,calling", HYSTERESIS)
def test_thermostat_hysteresis(mode, setpoint, band, thetas, calling):
    d = ThermostaticDevice("x", 1000, (1.0, 0.0, 0.0), setpoint_c=setpoint, deadband_c=band,
                           mode=mode, theta0_c=setpoint)
    d.read_w(0)
    got = []
    for theta in thetas:
        d.theta_mc = int(round(theta * 1000))
        got.append(d.read_w(0) == 1000)  # same time: no integration, thermostat only
    assert got == calling


def test_cooling_device_cools_when_served_and_warms_when_disabled():
    ac = ThermostaticDevice("ac", 3000, (1.0, 0.0, 0.0), setpoint_c=24.0, deadband_c=1.0,
                            ambient_c=32.0, ua_w_per_c=150.0, c_j_per_c=200000, theta0_c=25.0,
                            mode="cool", cop=3.0)
    ac.read_w(0)
    ac.write(3000, 0)
    ac.read_w(60000)
    cooled = ac.theta_mc
    assert cooled < 25000  # 9 kW of cooling vs 1.05 kW of gain
    ac.write(0, 60000)
    ac.read_w(120000)
    assert ac.theta_mc > cooled


def test_constant_and_fake_devices():
    c = ConstantDevice("p", 1500, (0.6, 0.4, 0.0))
    assert c.read_w(0) == 1500
    c.write(600, 0)
    assert c.enabled_w == 600 and c.info()["rated_w"] == 1500
    f = FakeDevice("f", (1.0, 0.0, 0.0), [10, 20])
    assert [f.read_w(0), f.read_w(1), f.read_w(2)] == [10, 20, 20]
    f.write(5, 3)
    assert f.writes == [(3, 5)]
    with pytest.raises(DeviceError, match="^rated_w:"):
        ConstantDevice("p", -1, (1.0, 0.0, 0.0))
    with pytest.raises(DeviceError, match="^mode:"):
        ThermostaticDevice("t", 1, (1.0, 0.0, 0.0), mode="fan")
