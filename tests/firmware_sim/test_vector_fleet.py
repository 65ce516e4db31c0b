"""Vectorized fleet: safety invariants, timers, override, fail-safe and aggregation, by hand."""
import numpy as np
import pytest

from cloud.estimator import RefractoryParams
from firmware_sim.vector_fleet import DF, DR, EF, ER, FleetError, VectorFleet

SH = (0.5, 0.3, 0.2)


def fleet(n=1000, seed=1, **kw):
    return VectorFleet(np.ones(n), SH, np.random.default_rng(seed), **kw)


def test_black_never_disabled_and_p_one_switches_everything_flexible():
    f = fleet()
    f.step(0.0, np.zeros(3), np.ones(3))
    c = f.counts()
    np.testing.assert_array_equal(c[:, DR], [1000, 1000, 0])
    np.testing.assert_array_equal(c[2], [1000, 0, 0, 0])


def test_refractory_honoured_and_timer_range():
    f = fleet()
    f.step(0.0, np.zeros(3), np.array([1.0, 0.0, 0.0]))          # all green -> DR at t=0
    ends = f.timer_end_s[:, 0]
    assert ends.min() >= 120.0 and ends.max() <= 180.0
    t = 2.0
    while t < 120.0:                                              # p_on = 1 cannot touch DR
        f.step(t, np.ones(3), np.zeros(3))
        assert f.counts()[0, DR] == 1000
        t += 2.0
    for t in np.arange(120.0, 182.0, 2.0):
        f.step(float(t), np.ones(3), np.zeros(3))
        # a slice whose timer ended may switch on in the same round: DR -> DF -> ER
        assert f.counts()[0, DF] == 0
    assert f.counts()[0, ER] == 1000


def test_fail_safe_before_first_vector_and_after_silence():
    f = fleet(fail_safe_s=60.0)
    assert f._vector_in_force(0.0, None, None)[0][0].tolist() == [1.0, 1.0, 1.0]
    f.step(0.0, np.zeros(3), np.array([1.0, 1.0, 0.0]))
    f.step(2.0, np.zeros(3), np.zeros(3))
    for t in np.arange(4.0, 200.0, 2.0):                          # no vector any more
        f.step(float(t))
    assert f._vector_in_force(61.9, None, None)[1][0].tolist() == [0.0, 0.0, 0.0]
    c = f.counts()                                                 # everything re-enabled
    assert c[:, DF].sum() == 0 and c[:, DR].sum() == 0


def test_override_forces_on_until_end_then_flexible():
    f = fleet(n=10)
    f.step(0.0, np.zeros(3), np.array([1.0, 1.0, 0.0]))
    f.start_override([3, 4], 50.0)
    assert (f.state_2d[3] == ER).all() and (f.state_2d[4] == ER).all()
    for t in (2.0, 48.0):
        f.step(t, np.zeros(3), np.ones(3))
        assert (f.state_2d[[3, 4]] == ER).all()                       # held: not switchable
    f.step(50.0, np.zeros(3), np.zeros(3))
    assert (f.state_2d[[3, 4]] == EF).all()


def test_aggregation_by_hand():
    f = VectorFleet(np.array([1.0, 2.0, 3.0, 4.0]), SH, np.random.default_rng(0), devices_per_gateway=2)
    f.state_2d[1, 0] = DR
    f.state_2d[2, 1] = ER
    f.demand_kw = f.demand_kw                    # recount after editing the state by hand
    agg = f.aggregate()
    np.testing.assert_allclose(agg[0], [0.5 * (1 + 3 + 4), 0, 0, 0.5 * 2])
    np.testing.assert_allclose(agg[1], [0.3 * 7, 0.9, 0, 0])
    rep = f.gateway_reports()
    assert rep.shape == (2, 3, 4)
    np.testing.assert_allclose(rep.sum(axis=0), agg)
    np.testing.assert_allclose(rep[0, 0], [0.5, 0, 0, 1.0])
    np.testing.assert_allclose(f.enabled_fraction(), [1.0, 0.5, 1.0, 1.0])


def test_zero_share_tier_has_no_slice():
    f = VectorFleet(np.ones(100), (0.0, 0.8, 0.2), np.random.default_rng(0))
    f.step(0.0, np.zeros(3), np.ones(3))
    c = f.counts()
    assert c[0].sum() == 0 and f.switches.sum() == 100               # only yellow switched


def test_switch_rate_matches_probability():
    f = fleet(n=200_000)
    n = f.step(0.0, np.zeros(3), np.array([0.1, 0.0, 0.0]))
    assert abs(n - 20_000) < 5 * np.sqrt(200_000 * 0.09)


@pytest.mark.parametrize("kw,shares,msg", [
    (np.ones(3), (0.5, 0.4), "sum to 1"),
    (np.array([-1.0]), (1.0,), "device_kw"),
])
def test_bad_setup(kw, shares, msg):
    with pytest.raises(FleetError, match=msg):
        VectorFleet(kw, shares, np.random.default_rng(0))


def test_bad_vector_shape():
    with pytest.raises(FleetError, match="shape"):
        fleet().step(0.0, np.zeros(2), np.zeros(2))


def test_custom_refractory():
    f = fleet(refractory=RefractoryParams(10.0, 0.0, 20.0, 0.0))
    f.step(0.0, np.zeros(3), np.array([1.0, 0, 0]))
    np.testing.assert_allclose(f.timer_end_s[:, 0], 20.0)


def _grouped(groups=2, n=400):
    return VectorFleet(np.full(n, 2.0), (0.45, 0.45, 0.1), np.random.default_rng(3),
                       devices_per_gateway=10, groups=groups)


def test_groups_are_contiguous_gateway_blocks_and_sum_to_the_fleet():
    f = _grouped(groups=4)
    assert f.n_groups == 4 and f.group_of_gateway.tolist() == [g for g in range(4) for _ in range(10)]
    assert f.group_of.tolist() == [d // 100 for d in range(400)]
    np.testing.assert_allclose(f.group_aggregate().sum(axis=0), f.aggregate())
    np.testing.assert_allclose(f.group_aggregate()[:, :, EF].sum(axis=1), [200.0] * 4)  # 100 devices x 2 kW


def test_each_group_follows_its_own_vector():
    f = _grouped()
    off = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])      # group 0 sheds green, group 1 nothing
    f.step(0.0, np.zeros((2, 3)), off)
    agg = f.group_aggregate()
    assert agg[0, 0, DR] == pytest.approx(200 * 2.0 * 0.45) and agg[0, 1, DR] == 0.0
    assert agg[1, :, DR].sum() == 0.0 and agg[1, 0, EF] == pytest.approx(200 * 2.0 * 0.45)
    # reports per gateway agree with the group totals
    rep = f.gateway_reports()
    np.testing.assert_allclose(rep[f.group_of_gateway == 0].sum(axis=0), agg[0])


def test_a_nan_row_keeps_that_groups_vector_and_silence_fails_safe_per_group():
    f = _grouped()
    f.step(0.0, np.zeros((2, 3)), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    nan = np.full(3, np.nan)
    for t in np.arange(2.0, 70.0, 2.0):                      # only group 1 keeps receiving
        f.step(float(t), np.vstack([nan, np.zeros(3)]), np.vstack([nan, [0.5, 0.0, 0.0]]))
    on, off = f._vector_in_force(70.0, None, None)
    assert on[0].tolist() == [1.0, 1.0, 1.0] and off[0].tolist() == [0.0, 0.0, 0.0]   # group 0: fail-safe
    assert off[1].tolist() == [0.5, 0.0, 0.0]


def test_group_count_is_checked():
    with pytest.raises(FleetError, match="groups"):
        _grouped(groups=41)                                  # 40 gateways
    with pytest.raises(FleetError, match="shape"):
        _grouped().step(0.0, np.zeros((3, 3)), np.zeros((3, 3)))
