"""Real-time re-clearing inside the day: the VPP's real-time caps (only tiers and hours the day-ahead
plan curtails, scaled by the latest demand the controller reports) and the goal following a
clearing's 5-min reductions, cleared once per hour when the controller first reaches it."""
from __future__ import annotations

import pytest

from cloud.goals import ConstantGoal
from market.vpp.dispatch import plan_dispatch
from market.vpp.realtime import RealTimeGoal, rt_caps
from market.vpp.supply import build_supply, offer_id
from tests.market.vpp.cases import HOUR_MS, portfolio
from tests.market.vpp.test_supply import STARTS, fleet_stats


def day_plan():
    """2.1: 50 kW cleared in hour 0 (green 44 + yellow 6), 10 kW in hour 2 (green only)."""
    p = portfolio(hours=4.0, events=4)
    curves = build_supply(p, fleet_stats(), STARTS, 1.0, confidence=0.9)
    return plan_dispatch({("2.1", 0): 50.0, ("2.1", 2): 10.0}, curves, p), curves


def test_caps_only_where_the_day_ahead_plan_curtails_scaled_by_latest_demand():
    plan, curves = day_plan()
    caps = rt_caps(plan, curves, 0, {"2.1": 0.5})
    assert caps[offer_id("2.1", "green")] == pytest.approx(22.0)         # 44 kW offered × 0.5
    assert caps[offer_id("2.1", "yellow")] == pytest.approx(15.0)        # 30 kW × 0.5
    assert caps[offer_id("3.1", "green")] == 0.0                         # nothing cleared at 3.1
    hour2 = rt_caps(plan, curves, 2, {"2.1": 1.7})                      # ratio capped at 1
    assert hour2[offer_id("2.1", "green")] == pytest.approx(44.0) and hour2[offer_id("2.1", "yellow")] == 0.0
    assert all(v == 0.0 for v in rt_caps(plan, curves, 1, {}).values())  # no day-ahead curtailment in hour 1


def test_goal_follows_the_real_time_reductions_cleared_once_per_hour():
    plan, curves = day_plan()
    calls = []

    def clear_hour(h, caps):
        calls.append((h, dict(caps)))
        return {("2.1", k): (30.0 if k < 6 else 0.0) for k in range(12)} if h == 0 else {}

    goal = RealTimeGoal(plan, curves, clear_hour, fallback=ConstantGoal(999.0))
    assert goal.goal_kw("2.1", -1) == 999.0 and not calls                # before the day: the fallback
    demand = plan.no_shed_kw["2.1"] * 0.8
    assert goal.goal_kw("2.1", 0, demand) == pytest.approx(100.0 - 30.0)  # baseline − RT reduction
    assert goal.goal_kw("2.1", 29 * 60_000) == pytest.approx(70.0)
    assert goal.goal_kw("2.1", 31 * 60_000) == plan.no_shed_kw["2.1"]    # RT reduction 0: nothing shed
    assert [h for h, _ in calls] == [0]
    assert calls[0][1][offer_id("2.1", "green")] == pytest.approx(44.0 * 0.8)   # the latest demand reported
    assert goal.goal_kw("2.1", HOUR_MS + 1) == plan.no_shed_kw["2.1"] and [h for h, _ in calls] == [0, 1]
    assert goal.reduction_kw("2.1", 5 * 60_000) == 30.0 and goal.reduction_kw("2.1", 3 * HOUR_MS) is None
