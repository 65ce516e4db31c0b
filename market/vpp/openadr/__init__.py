"""OpenADR 2.0b VEN of the VPP (optional extra ``[openadr]``; only `client` imports openleadr).

    flex = StatsFlexibility(portfolio, YieldStats(SqliteYieldStore("vpp.db"), portfolio.tiers), confidence=0.9)
    goal = AdrGoal(no_shed_kw={loc: portfolio.kw(loc) for loc in portfolio.locations()})
    ven = Ven(FlexibilityMapper(flex, max_kw=None), goal, fleet=RoundsFleetState("out/rounds.csv", tiers, origin_ms))
    await OpenleadrVen(ven, vtn_url, "vpp-1", portfolio.locations()).start()

An event's LOAD_DISPATCH signal (setpoint or delta per interval) becomes goals per location and
interval (`decide`), opted in only when the P90 flexibility and the tier contracts allow it; the
goals are a `cloud.goals.GoalSchedule` (source "openadr") and signed `cloud.dispatch` schedules.
See market/vpp/README.md "OpenADR VEN" and docs/vpp.md.
"""
from market.vpp.openadr.decide import (OPT_IN, OPT_OUT, Availability, Decision, EventMapper, FakeFlexibility,
                                       FakeMapper, Flexibility, FlexibilityMapper, GoalInterval, StatsFlexibility)
from market.vpp.openadr.events import AdrEvent, AdrInterval, EventError, event_from_dict
from market.vpp.openadr.fleet import FakeFleetState, FleetState, RoundsFleetState
from market.vpp.openadr.goal import AdrGoal
from market.vpp.openadr.ven import FakePublisher, MqttPublisher, Publisher, Signer, Ven

__all__ = ["OPT_IN", "OPT_OUT", "AdrEvent", "AdrGoal", "AdrInterval", "Availability", "Decision", "EventError",
           "EventMapper", "FakeFlexibility", "FakeFleetState", "FakeMapper", "FakePublisher", "FleetState",
           "Flexibility", "FlexibilityMapper", "GoalInterval", "MqttPublisher", "Publisher", "RoundsFleetState",
           "Signer", "StatsFlexibility", "Ven", "event_from_dict"]
