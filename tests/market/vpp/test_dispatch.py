"""Dispatch → goals: the split in shed order, contract arithmetic (hours, events, notice), the black
floor, signed payloads accepted by cloud's DispatchGoal and equal to the in-process VppGoal, the
schedule.csv reader and the regulation overlay."""
from __future__ import annotations

import pytest

from cloud.dispatch import DispatchGoal
from cloud.goals import SOURCE_DISPATCH, SOURCE_VPP, ConstantGoal, RegulationGoal
from market.vpp.dispatch import (DispatchPlanError, RenamedGroups, VppGoal, cleared_from_schedule,
                                 dispatch_payloads, dispatch_records, plan_dispatch, read_schedule_csv)
from market.vpp.supply import build_supply, offer_id
from tests.market.vpp.cases import HOUR_MS, portfolio
from tests.market.vpp.test_supply import STARTS, fleet_stats

KEY = b"k" * 32


def curves_and_portfolio(**green_terms):
    p = portfolio(**green_terms)
    return build_supply(p, fleet_stats(), STARTS, 1.0, confidence=0.9), p


def test_split_in_shed_order_and_goal():
    """Offered at 2.1 in every interval: green 44 kW (P90), yellow 30 kW where chosen. Cleared 50 kW in
    interval 0 = green 44 + yellow 6; goal = baseline 100 − 50 = 50 kW."""
    c, p = curves_and_portfolio(hours=4.0, events=4)
    assert c.offered[("2.1", "yellow")] == (0, 1)          # 2 h, 1 event, priority = quantity (ties: earliest)
    plan = plan_dispatch({("2.1", 0): 50.0, ("2.1", 2): 10.0}, c, p)
    assert plan.tier_kw[("2.1", "green", 0)] == pytest.approx(44.0)
    assert plan.tier_kw[("2.1", "yellow", 0)] == pytest.approx(6.0)
    assert plan.goal_kw("2.1", 0) == pytest.approx(50.0)
    assert plan.goal_kw("2.1", 2) == pytest.approx(90.0)
    assert plan.goal_kw("2.1", 1) == plan.no_shed_kw["2.1"] == pytest.approx(180.0)   # contracted kW: no shedding
    assert plan.goal_kw("3.1", 0) == pytest.approx(180.0)
    assert [(r.location, r.start_ms, r.baseline_kw, r.goal_kw) for r in dispatch_records(plan)] == [
        ("2.1", 0, pytest.approx(100.0), pytest.approx(50.0)), ("2.1", 2 * HOUR_MS, pytest.approx(100.0), pytest.approx(90.0))]


def test_contract_hours_events_and_notice_cap_the_reduction():
    """Curves bid under generous terms, dispatched under the contracts in force (a schedule from
    elsewhere asks more than they allow). Green: 2 h/day, 2 events, 30 min notice. Cleared 20 kW in
    intervals 0, 1, 3: 0 and 1 are one event (2 h used), 3 would be a third hour → no reduction.
    Issued 20 min before interval 0: green lacks notice there → 0 too."""
    c, _ = curves_and_portfolio(hours=4.0, events=4)
    p = portfolio(hours=2.0, events=2, notice=30.0)
    cleared = {("2.1", 0): 20.0, ("2.1", 1): 20.0, ("2.1", 3): 20.0}
    plan = plan_dispatch(cleared, c, p, issued_ms=-30 * 60_000)
    assert [plan.reduction_kw[("2.1", t)] for t in range(4)] == pytest.approx([20.0, 20.0, 0.0, 0.0])
    assert plan.curtailed_intervals("2.1", "green") == [0, 1]
    assert any("interval 3" in m and "2 h of the day" in m for m in plan.clipped)
    late = plan_dispatch(cleared, c, p, issued_ms=-20 * 60_000)
    assert late.reduction_kw[("2.1", 0)] == 0.0 and any("30 min notice" in m for m in late.clipped)
    # events: 1 h intervals 0 and 2 are two events; with max 1 event the second is refused
    one = plan_dispatch({("2.1", 0): 10.0, ("2.1", 2): 10.0}, c, portfolio(hours=4.0, events=1))
    assert one.reduction_kw[("2.1", 2)] == 0.0 and any("1 events of the day" in m for m in one.clipped)


def test_yellow_breaking_its_contract_keeps_the_green_part():
    c, p = curves_and_portfolio(hours=4.0, events=4)
    # yellow is offered in 0, 1 only (2 h): cleared 60 kW in interval 2 needs yellow → capped at green 44 + note
    plan = plan_dispatch({("2.1", 0): 60.0, ("2.1", 1): 60.0, ("2.1", 2): 60.0}, c, p)
    assert plan.reduction_kw[("2.1", 0)] == pytest.approx(60.0)
    assert plan.reduction_kw[("2.1", 2)] == pytest.approx(44.0)
    assert any("above the 44 kW offered" in m for m in plan.clipped)


def test_black_is_never_shed_and_offers_are_not_exceeded():
    c, p = curves_and_portfolio(hours=4.0, events=4)
    plan = plan_dispatch({("2.1", 0): 1000.0}, c, p)
    assert plan.reduction_kw[("2.1", 0)] == pytest.approx(74.0)          # all that was offered
    assert plan.goal_kw("2.1", 0) >= c.curves[("2.1", 0)].black_kw
    with pytest.raises(DispatchPlanError, match="nothing was offered"):
        plan_dispatch({("9.1", 0): 5.0}, c, p)


def test_signed_payloads_give_the_same_goals_as_the_in_process_plan():
    c, p = curves_and_portfolio(hours=4.0, events=4)
    plan = plan_dispatch({("2.1", 0): 50.0, ("2.1", 1): 20.0, ("3.1", 3): 30.0}, c, p)
    payloads = dispatch_payloads(plan, "vpp", KEY, issued_ts_ms=0, dispatch_id=1)
    goal = DispatchGoal({"vpp": KEY}, fallback=ConstantGoal(0.0))
    for loc, payload in payloads.items():
        assert goal.offer(loc, payload, now_ms=0) == ""
    inproc = VppGoal(plan)
    for loc in ("2.1", "3.1"):
        for t_ms in (0, HOUR_MS - 1, HOUR_MS, 2 * HOUR_MS + 5, 4 * HOUR_MS - 1):
            assert goal.goal_kw(loc, t_ms) == pytest.approx(inproc.goal_kw(loc, t_ms))
            assert goal.source(loc, t_ms) == SOURCE_DISPATCH and inproc.source(loc, t_ms) == SOURCE_VPP
    assert goal.source("2.1", 4 * HOUR_MS) == "fallback"          # the schedule ends with the horizon
    renamed = RenamedGroups(inproc, {"g0": "2.1"})
    assert renamed.goal_kw("g0", 0) == pytest.approx(50.0)


def test_schedule_csv_and_lem_schedule_forms(tmp_path):
    path = tmp_path / "schedule.csv"
    path.write_text("resource,bus,phase,interval,p_kw,q_kvar\n"
                    f"{offer_id('2.1', 'green')},2,1,0,30.0,0\n{offer_id('2.1', 'yellow')},2,1,0,5.0,0\n"
                    f"{offer_id('2.1', 'green')},2,1,1,12.5,0\npv675,675,1,0,100,0\n")
    sched = read_schedule_csv(path)
    assert sched[offer_id("2.1", "green")] == [30.0, 12.5]
    assert cleared_from_schedule(sched) == {("2.1", 0): 35.0, ("2.1", 1): 12.5}


def test_regulation_overlay_within_an_interval():
    """Cleared 40 kW (goal 60) with 10 kW of regulation: goal(t) = 60 + 10·signal(t), within
    [black 10, baseline 100]."""
    c, p = curves_and_portfolio(hours=4.0, events=4)
    plan = plan_dispatch({("2.1", 0): 40.0}, c, p)
    signal = [0.5, -1.0, 1.0]
    goal = VppGoal(plan, regulation_kw={("2.1", 0): 10.0}, signal=signal)
    ref = RegulationGoal(60.0, 10.0, signal, start_ms=0)
    for t_ms in (0, 2000, 4000, 7000):
        assert goal.goal_kw("2.1", t_ms) == pytest.approx(ref.goal_kw("2.1", t_ms))
    assert goal.goal_kw("2.1", 2000) == pytest.approx(50.0)
