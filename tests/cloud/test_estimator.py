"""Estimator: carry-forward, scaling for missing sources, expiry kernel and one-round-ahead prediction."""
import numpy as np
import pytest

from cloud.control_law import ControlDecision, compute_control
from cloud.estimator import EstimatorError, FleetEstimator, RefractoryParams, expiry_kernel, group_refractory


def rep(ef, er=0.0, df=0.0, dr=0.0, k=1):
    x = np.zeros((k, 4))
    x[0] = [ef, er, df, dr]
    return x


def decision(p_on, p_off, on_kw, off_kw):
    a = np.asarray
    return ControlDecision(p_on=a(p_on, float), p_off=a(p_off, float), target_kw=a([0.0]),
                           goal_clipped_kw=0.0, saturated=False, on_kw=a(on_kw, float),
                           off_kw=a(off_kw, float))


def test_expiry_kernel_hand_values():
    k = expiry_kernel(120.0, 60.0, 2.0)
    assert k.sum() == pytest.approx(1.0)
    assert k[60] == 0.0 and k[61] == pytest.approx(2 / 60) and k[90] == pytest.approx(2 / 60)
    assert k[91:].sum() == 0.0
    k2 = expiry_kernel(3.0, 0.0, 2.0)          # fixed 3 s -> expires at the 2nd round
    np.testing.assert_array_equal(k2[:4], [0, 0, 1, 0])


def test_carry_forward_and_scaling_for_missing_sources():
    est = FleetEstimator(k=1, round_s=2.0, max_age_s=4.0)
    est.update([0, 1, 2], np.stack([rep(10), rep(20), rep(30)]), 0)
    est.update([0, 1], np.stack([rep(8, df=2), rep(20)]), 2000)
    e = est.estimate(4000)          # all three within 4 s
    np.testing.assert_allclose(e.state_kw[0], [58, 0, 2, 0])
    e = est.estimate(6000)          # source 2 (t=0) too old: scale W/W_used = 60/30
    assert e.used_sources == 2 and e.known_sources == 3
    np.testing.assert_allclose(e.state_kw[0], np.array([28, 0, 2, 0]) * 2.0)
    with pytest.raises(EstimatorError, match="no usable report"):
        est.estimate(20000)


def test_older_report_never_replaces_newer_and_bad_report():
    est = FleetEstimator(k=1)
    est.update([0], rep(5)[None], 4000)
    est.update([0], rep(99)[None], 2000)
    assert est.estimate(4000).state_kw[0, 0] == 5.0
    with pytest.raises(EstimatorError, match="finite"):
        est.update([0], np.full((1, 1, 4), np.nan), 6000)


def test_string_ids_and_forget():
    est = FleetEstimator(k=2)
    est.update_one("gw-a", np.ones((2, 4)), 0)
    est.update_one("gw-b", 2 * np.ones((2, 4)), 0)
    assert est.estimate(0).state_kw.sum() == pytest.approx(24.0)
    est.forget("gw-b")
    assert est.estimate(0).state_kw.sum() == pytest.approx(8.0)
    with pytest.raises(ValueError, match="gw-c"):
        est.update_one("gw-c", np.ones((3, 3)), 0)


def test_prediction_replays_the_vector_sent_since_the_report():
    # report after round 0; the vector for round 1 (p_off 0.5) was already sent: predicting the
    # switching instant of round 2 must count round 1's expected switches (one-round-old estimate)
    est = FleetEstimator(k=1, round_s=2.0, max_age_s=10.0)
    est.update([0], rep(100, df=50)[None], 0)
    est.record_decision(2000, decision([0.2], [0.5], [10.0], [50.0]))
    x = est.predict(4000)
    np.testing.assert_allclose(x[0], [50, 10, 40, 50])
    # fresh: predicting round 1 from round 0 changes nothing (no timers due)
    np.testing.assert_allclose(est.predict(2000, now_ms=0)[0], [100, 0, 50, 0])


def test_prediction_of_refractory_expiry():
    est = FleetEstimator(k=1, round_s=2.0, max_age_s=1000.0, refractory=RefractoryParams())
    est.record_decision(0, decision([0.0], [0.1], [0.0], [10.0]))
    est.update([0], rep(90, dr=10)[None], 0)
    # by 150 s, P(120 + U(0, 60) <= 150) = 0.5 of the DR is flexible again
    x = est.predict(150_000)
    np.testing.assert_allclose(x[0], [90, 0, 5, 5])
    # only half the modelled DR reported at round 1 -> expiry scaled by 5/10: 10 * 0.5 * 0.5
    est.update([0], rep(95, dr=5)[None], 2000)
    x = est.predict(150_000)
    np.testing.assert_allclose(x[0], [95, 0, 2.5, 2.5])


def test_closed_loop_with_control_law_hits_goal_in_expectation():
    est = FleetEstimator(k=2)
    state = np.array([[40.0, 0, 0, 0], [60.0, 0, 0, 0]])
    est.update([0], state[None], 0)
    d = compute_control(est.predict(2000, now_ms=0), 80.0)
    assert d.expected_enabled_kw == pytest.approx(80.0)


# ---- refractory parameters: one default, from a gateway's birth, one per group -----------------
def birth_params(**params_s):
    """The `params` a real agent announces in its birth, for AgentParams(**params_s)."""
    from edge_agent.device import ConstantDevice
    from edge_agent.gateway import GatewayCore
    from edge_agent.params import AgentParams
    from edge_agent.prng import Prng
    from edge_agent.runtime import GatewayAgent
    from edge_agent.transport import FakeBroker, FakeTransport

    core = GatewayCore("gw", [ConstantDevice("d", 1000, (1.0, 0.0, 0.0))], AgentParams(**params_s))
    agent = GatewayAgent(core, FakeTransport(FakeBroker(), "c"), "gw", "g", {"k1": bytes(16)}, Prng(1))
    return agent.params()


def test_refractory_defaults_are_the_agents():
    from edge_agent.params import AgentParams
    a = AgentParams()
    assert RefractoryParams() == RefractoryParams(a.t_ef_s, a.t_ev_s, a.t_df_s, a.t_dv_s)
    assert RefractoryParams.from_params(birth_params()) == RefractoryParams()


def test_refractory_from_birth_params():
    got = RefractoryParams.from_params(birth_params(t_ef_s=30, t_ev_s=0.5, t_df_s=90, t_dv_s=0))
    assert got == RefractoryParams(30.0, 0.5, 90.0, 0.0)
    assert RefractoryParams.from_params({"t_df_ms": 4000, "k": 3}) == RefractoryParams(t_df_s=4.0)


@pytest.mark.parametrize("params, message", [
    ({"t_ef_ms": "120000"}, "params.t_ef_ms: not an integer"),
    ({"t_ev_ms": 1.5}, "params.t_ev_ms: not an integer"),
    ({"t_df_ms": True}, "params.t_df_ms: not an integer"),
    ({"t_dv_ms": -1}, r"params.t_dv_ms: out of range \[0, 86400000\]"),
    ({"t_ef_ms": 86_400_001}, r"params.t_ef_ms: out of range"),
    (["t_ef_ms"], "params: expected an object"),
])
def test_refractory_from_bad_params_names_the_field(params, message):
    with pytest.raises(ValueError, match="^" + message):
        RefractoryParams.from_params(params)


def test_group_refractory_most_common_then_first():
    a, b = {"t_ef_ms": 10_000}, {"t_ef_ms": 20_000}
    assert group_refractory([a, b, b, a, b]) == RefractoryParams(t_ef_s=20.0)
    assert group_refractory([b, a, a, b]) == RefractoryParams(t_ef_s=20.0)    # tie: first seen
    assert group_refractory([a, b]) == RefractoryParams(t_ef_s=10.0)
    assert group_refractory([{}, a, {"k": 3}]) == RefractoryParams()          # missing = default
    assert group_refractory([]) == RefractoryParams()


def test_group_refractory_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"^params\[1\].t_dv_ms: not an integer"):
        group_refractory([{}, {"t_dv_ms": None}])
