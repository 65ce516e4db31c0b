"""The one control round step: estimate → goal → control law → decision record."""
import numpy as np
import pytest

from cloud.control_law import ControlParams, compute_control
from cloud.dispatch import DispatchGoal
from cloud.estimator import EstimatorError, FleetEstimator
from cloud.goals import ConstantGoal, FractionOfDemand, GoalError
from cloud.round_step import GroupRound

STATE = np.array([[40.0, 5.0, 10.0, 5.0], [30.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])   # 100 kW


def test_fallback_state_goal_and_law_as_computed_by_hand():
    step = GroupRound("671.1", ConstantGoal(60.0), ControlParams())
    rec = step.step(2000, 2000, fallback_kw=STATE)
    assert not rec.estimated and rec.goal.kw == 60.0 and rec.goal.source == "schedule"
    ref = compute_control(STATE, 60.0, ControlParams())
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
    step = GroupRound("g", ConstantGoal(60.0), ControlParams(), est)
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
