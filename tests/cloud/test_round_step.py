"""The one control round step: estimate → goal → control law → decision record."""
import numpy as np
import pytest

from cloud.control_law import ControlParams, compute_control
from cloud.dispatch import DispatchGoal
from cloud.estimator import EstimatorError, FleetEstimator
from cloud.goals import ConstantGoal, FractionOfDemand, GoalError
from cloud.round_step import GroupRound

STATE = np.array([[40.0, 5.0, 10.0, 5.0], [30.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])   # 100 kW
NO_RAMP = ControlParams(ramp_share_per_round=0.0)   # the law alone (the recovery ramp is tested below)


def test_fallback_state_goal_and_law_as_computed_by_hand():
    step = GroupRound("671.1", ConstantGoal(60.0), NO_RAMP)
    rec = step.step(2000, 2000, fallback_kw=STATE)
    assert not rec.estimated and rec.goal.kw == 60.0 and rec.goal.source == "schedule"
    ref = compute_control(STATE, 60.0, NO_RAMP)
    np.testing.assert_array_equal(rec.decision.p_off, ref.p_off)
    # enabled 85 kW, goal 60: 25 kW off, taken from green first (its EF is 40 kW)
    assert rec.decision.off_kw[0] == pytest.approx(25.0, abs=1e-9) and rec.decision.p_on[0] == 0.0


def test_fraction_of_demand_gets_the_estimated_demand():
    rec = GroupRound("g", FractionOfDemand(ConstantGoal(0.7)), ControlParams()).step(0, 0, fallback_kw=STATE)
    assert rec.goal.kw == pytest.approx(70.0)
    with pytest.raises(GoalError, match="demand_kw"):
        FractionOfDemand(ConstantGoal(0.7)).goal_kw("g", 0)


def test_estimator_prediction_is_used_and_the_decision_recorded():
    est = FleetEstimator(3, round_s=2.0)
    est.update_one("gw1", STATE, 0)
    step = GroupRound("g", ConstantGoal(60.0), NO_RAMP, est)
    first = step.step(2000, 2000, fallback_kw=STATE * 0)
    assert first.estimated and first.state_kw.sum() == pytest.approx(100.0)
    # the next prediction replays what was sent: enabled demand expected at the new goal
    second = step.step(4000, 4000)
    enabled = second.state_kw[:, 0].sum() + second.state_kw[:, 1].sum()
    assert enabled == pytest.approx(60.0, abs=1e-6)


def test_nothing_to_act_on_raises_and_an_explicit_state_wins():
    step = GroupRound("g", ConstantGoal(1.0), ControlParams(), FleetEstimator(3))
    with pytest.raises(EstimatorError):
        step.step(0, 2000)
    rec = step.step(0, 2000, fallback_kw=STATE * 0, state_kw=STATE)
    assert rec.state_kw.sum() == 100.0 and not rec.estimated


def test_dispatch_source_is_reported():
    goal = DispatchGoal({"k": b"k" * 32}, fallback=ConstantGoal(50.0))
    rec = GroupRound("g", goal, ControlParams()).step(0, 0, fallback_kw=STATE)
    assert (rec.goal.kw, rec.goal.source) == (50.0, "fallback")


# ---------------------------------------------------------------- recovery ramp (issue 16.2)
FULL = np.array([[40.0, 0.0, 0.0, 0.0], [40.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]])  # all enabled, 100 kW


def net_step_kw(decision) -> float:
    """Enabled kW the round moves (on − off; the fairness swap and tier rebalancing net to 0)."""
    return float(decision.on_kw[:-1].sum() - decision.off_kw[:-1].sum())


def settle(state, decision):
    """The state after the round switched as expected, refractory demand back to flexible."""
    from cloud.control_law import expected_after_switch
    x = expected_after_switch(state, decision.p_on, decision.p_off)
    x[:, 0] += x[:, 1]
    x[:, 2] += x[:, 3]
    x[:, 1] = x[:, 3] = 0.0
    return x


def test_first_round_after_a_start_moves_the_fleet_at_most_the_ramp():
    """After a (re)start the fleet is fully enabled (fail-safe) and the goal is half of it: the
    first round used to shed the whole 50 kW gap at once."""
    step = GroupRound("g", ConstantGoal(50.0), ControlParams())
    rec = step.step(0, 0, fallback_kw=FULL)
    assert rec.ramped and rec.law_goal_kw == pytest.approx(100.0 - 3.0)
    assert abs(net_step_kw(rec.decision)) <= 0.03 * 100.0 + 1e-9


def test_ramp_brings_the_fleet_to_the_goal_in_bounded_steps_then_tracks_freely():
    share = 0.05
    step = GroupRound("g", ConstantGoal(50.0), ControlParams(ramp_share_per_round=share))
    x, rounds = FULL.copy(), 0
    while True:
        rec = step.step(rounds * 2000, rounds * 2000, fallback_kw=x)
        assert abs(net_step_kw(rec.decision)) <= share * x.sum() + 1e-9
        x = settle(x, rec.decision)
        rounds += 1
        if not rec.ramped:
            break
        assert rounds < 20
    assert rounds == pytest.approx(50 / 5 + 1, abs=1)
    assert x[:, 0].sum() == pytest.approx(50.0, abs=1e-6)
    # recovery over: a 20 kW goal step is followed at once (normal tracking is not limited)
    step.goal = ConstantGoal(30.0)
    rec = step.step(100_000, 100_000, fallback_kw=x)
    assert not rec.ramped and net_step_kw(rec.decision) == pytest.approx(-20.0, abs=1e-6)


def test_recover_restarts_the_ramp_and_zero_turns_it_off():
    step = GroupRound("g", ConstantGoal(50.0), ControlParams())
    near = FULL * 0.5
    assert step.step(0, 0, fallback_kw=near).ramped               # at the goal: one calm round,
    assert not step.step(2000, 2000, fallback_kw=near).ramped     # two end the recovery
    step.recover("fail-safe")
    assert step.step(2000, 2000, fallback_kw=FULL).ramped
    off = GroupRound("g", ConstantGoal(50.0), ControlParams(ramp_share_per_round=0.0))
    assert net_step_kw(off.step(0, 0, fallback_kw=FULL).decision) == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="ramp_share_per_round"):
        ControlParams(ramp_share_per_round=1.5)


def test_a_misleading_first_estimate_does_not_end_the_recovery():
    """Issue 16 (flaky test_controller_kill_fail_safe_and_resume_with_registry, a -51 % step):
    right after a restart only a few gateways had reported, their scaled estimate happened to lie
    within one step of the goal and ended the recovery at once; the next round's real estimate
    (everything enabled, back from fail-safe) was then shed in one round. Recovery now ends only
    after two consecutive rounds within one step, each with every live gateway fresh."""
    step = GroupRound("g", ConstantGoal(50.0), ControlParams())
    misleading = FULL * 0.5                                        # few gateways, scaled up
    first = step.step(0, 0, fallback_kw=misleading, fresh=False)
    assert first.ramped and step.recovering
    second = step.step(500, 500, fallback_kw=FULL)                 # the real fleet: all enabled
    assert second.ramped and abs(net_step_kw(second.decision)) <= 0.03 * 100.0 + 1e-9
    # one fresh round within a step is not enough either: the next estimate may still jump
    step2 = GroupRound("g", ConstantGoal(50.0), ControlParams())
    assert step2.step(0, 0, fallback_kw=misleading).ramped
    rec = step2.step(500, 500, fallback_kw=FULL)
    assert rec.ramped and abs(net_step_kw(rec.decision)) <= 0.03 * 100.0 + 1e-9
    # stale rounds within a step never end it; two fresh ones do
    step3 = GroupRound("g", ConstantGoal(50.0), ControlParams())
    for t in range(5):
        assert step3.step(t * 500, t * 500, fallback_kw=misleading, fresh=False).ramped
    assert step3.step(3000, 3000, fallback_kw=misleading).ramped
    assert not step3.step(3500, 3500, fallback_kw=misleading).ramped


def test_in_recovery_what_can_switch_stays_within_the_ramp_whatever_the_split():
    """Issue 16 (bench.faults: one-round steps of 4.3-5.3 % against a 3 % ramp): back from
    fail-safe most enabled demand is refractory in the reports (p_on = 1 just switched it on) and
    turns flexible within a round, so p_off = goal gap / EF (EF small) switched far more than the
    ramp. In recovery Σ p_off·(EF+ER) and Σ p_on·(DF+DR) are kept within r."""
    back = np.array([[2.0, 38.0, 0.0, 0.0], [2.0, 38.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]])   # 100 kW
    law_only = compute_control(back, 97.0, ControlParams())
    assert law_only.p_off[0] == pytest.approx(1.0)                 # what was sent before
    rec = GroupRound("g", ConstantGoal(50.0), ControlParams()).step(0, 0, fallback_kw=back)
    assert rec.ramped and rec.law_goal_kw == pytest.approx(97.0)
    d = rec.decision
    worst_off = float(d.p_off[:2] @ (back[:2, 0] + back[:2, 1]))   # every ER flexible by then
    assert worst_off == pytest.approx(3.0) and d.p_off[0] == pytest.approx(1.0 * 3.0 / 60.0)
    assert d.p_off[1] == pytest.approx(0.5 * 3.0 / 60.0) and d.p_off[2] == 0.0
    assert d.off_kw[0] == pytest.approx(d.p_off[0] * 2.0)           # on the estimate's EF
    # the other direction: demand mostly in DR that turns DF within the round
    low = np.array([[0.0, 0.0, 2.0, 38.0], [0.0, 0.0, 2.0, 38.0], [20.0, 0.0, 0.0, 0.0]])
    up = GroupRound("g", ConstantGoal(80.0), ControlParams()).step(0, 0, fallback_kw=low).decision
    assert float(up.p_on[:2] @ (low[:2, 2] + low[:2, 3])) <= 3.0 + 1e-9 and up.p_on[2] == 1.0
    # out of recovery the law is untouched (steady-state tracking unchanged)
    step = GroupRound("g", ConstantGoal(97.0), ControlParams())
    step.recovering = False
    np.testing.assert_array_equal(step.step(0, 0, fallback_kw=back).decision.p_off, law_only.p_off)
