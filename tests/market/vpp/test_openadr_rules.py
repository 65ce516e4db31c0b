"""OpenADR VEN without openleadr: reading an event, the event → goal mapping and the opt-in/opt-out
rules against hand-computed cases, the goal schedule (ramp, fallback, signed dispatch accepted by
cloud's DispatchGoal), the VEN core (publish, withdraw, reports from a fleet state)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cloud.dispatch import DispatchGoal, decode_dispatch
from cloud.goals import SOURCE_DISPATCH, SOURCE_OPENADR, SOURCE_SCHEDULE, ConstantGoal, evaluate
from market.vpp.openadr import (AdrGoal, Availability, EventError, FakeFleetState, FakeFlexibility, FakeMapper,
                                FakePublisher, FlexibilityMapper, Signer, StatsFlexibility, Ven, event_from_dict)
from market.vpp.portfolio import TierContract
from market.vpp.yield_stats import TelemetryRow
from tests.market.vpp.cases import portfolio
from tests.market.vpp.test_supply import fleet_stats

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
NOON_MS = int(NOON.timestamp() * 1000)
MIN = 60_000
KEY = b"k" * 32
GREEN = TierContract(max_curtailment_h_per_day=2.0, max_events_per_day=2, min_notice_min=0.0,
                     compensation_usd_per_kwh=0.05)
YELLOW = TierContract(max_curtailment_h_per_day=1.0, max_events_per_day=1, min_notice_min=30.0,
                      compensation_usd_per_kwh=0.04)


def flex() -> FakeFlexibility:
    """671.1: baseline 100, black 10, flexible green 40 + yellow 30 = 70 kW; 675.3: 50, 5, 20 + 10 = 30 kW."""
    return FakeFlexibility(("green", "yellow"),
                           {"671.1": Availability(100.0, 10.0, (40.0, 30.0)),
                            "675.3": Availability(50.0, 5.0, (20.0, 10.0))},
                           {"green": GREEN, "yellow": YELLOW}, no_shed_kw={"671.1": 180.0, "675.3": 90.0})


def event(event_id, values, signal_type="setpoint", start=NOON, minutes=30, targets=("671.1",), mod=0,
          status="far", ramp=None, measurement=None):
    """An event dict as openleadr hands it to on_event (targets parsed into numbers, as openleadr does)."""
    intervals = [{"dtstart": start + timedelta(minutes=minutes * i), "duration": timedelta(minutes=minutes),
                  "uid": i, "signal_payload": v} for i, v in enumerate(values)]
    signal = {"intervals": intervals, "signal_name": "LOAD_DISPATCH", "signal_type": signal_type, "signal_id": "s"}
    if measurement:
        signal["measurement"] = measurement
    period = {"dtstart": start, "duration": timedelta(minutes=minutes * len(values))}
    if ramp is not None:
        period["ramp_up_period"] = ramp
    return {"event_descriptor": {"event_id": event_id, "modification_number": mod, "event_status": status},
            "active_period": period, "event_signals": [signal],
            "targets_by_type": {"resource_id": [float(t) for t in targets]} if targets else {"ven_id": ["v"]}}


def decide(mapper, ev, notice_min=60.0):
    return mapper.decide(event_from_dict(ev), NOON_MS - int(notice_min * MIN))


# ---- reading events --------------------------------------------------------------------------------
def test_event_from_openleadr_dict():
    e = event_from_dict(event("e1", [70.0, 50.0], targets=("671.1", "675.3"), ramp=timedelta(minutes=5)))
    assert e.targets == ("671.1", "675.3")            # the floats openleadr made are location ids again
    assert [(i.start_ms - NOON_MS, i.duration_ms, i.value_kw) for i in e.intervals] == [
        (0, 30 * MIN, 70.0), (30 * MIN, 30 * MIN, 50.0)]
    assert e.ramp_up_ms == 5 * MIN and e.end_ms == NOON_MS + 60 * MIN
    watts = event_from_dict(event("e2", [-30_000.0], "delta", measurement={"unit": "W", "scale": "none"}))
    assert watts.intervals[0].value_kw == pytest.approx(-30.0)


@pytest.mark.parametrize("mutate, field", [
    (lambda ev: ev["event_signals"][0].update(signal_name="SIMPLE"), "no LOAD_DISPATCH"),
    (lambda ev: ev["event_signals"][0].update(signal_type="multiplier"), "signal_type"),
    (lambda ev: ev["event_signals"][0]["intervals"][0].update(dtstart=datetime(2026, 6, 1, 12)), "naive"),
    (lambda ev: ev["event_signals"][0]["intervals"][0].update(signal_payload=float("nan")), "signal_payload"),
    (lambda ev: ev["event_signals"][0]["intervals"][1].update(dtstart=NOON), "overlapping"),
    (lambda ev: ev["targets_by_type"].update(resource_id=["no such place!"]), r"targets\.resource_id\[0\]"),
])
def test_unreadable_events_name_the_field(mutate, field):
    ev = event("bad", [70.0, 50.0])
    mutate(ev)
    with pytest.raises(EventError, match=field):
        event_from_dict(ev)


# ---- the rules, hand-computed ----------------------------------------------------------------------
def test_setpoint_opts_in_and_becomes_the_goal_per_interval():
    """Setpoints 70 and 50 at 671.1 (baseline 100): R = 30, 50 ≤ 70 flexible. Split: 30 = green 30;
    50 = green 40 + yellow 10. Yellow has 90 min notice (≥ 30), 0.5 h (≤ 1 h), 1 event: opt in."""
    m = FlexibilityMapper(flex())
    d = decide(m, event("A", [70.0, 50.0]), notice_min=90.0)
    assert d.opt == "optIn" and d.requested_kw == pytest.approx((30.0, 50.0)) and d.flexible_kw == (70.0, 70.0)
    assert [(g.location, g.goal_kw, g.reduction_kw, g.tier_kw) for g in d.goals] == [
        ("671.1", pytest.approx(70.0), pytest.approx(30.0), pytest.approx((30.0, 0.0))),
        ("671.1", pytest.approx(50.0), pytest.approx(50.0), pytest.approx((40.0, 10.0)))]
    assert m.booked["A"].hours == {("671.1", "green", NOON_MS // 86_400_000): 1.0,
                                   ("671.1", "yellow", NOON_MS // 86_400_000): 0.5}


def test_opt_out_when_the_reduction_exceeds_p90_flexibility_or_the_contract_limit():
    m = FlexibilityMapper(flex())
    d = decide(m, event("C", [-80.0], "delta"))
    assert d.opt == "optOut" and "requested reduction 80 kW exceeds the 70 kW flexible" in d.reason
    assert d.goals == () and m.booked == {}
    limited = FlexibilityMapper(flex(), max_kw=25.0)
    d = decide(limited, event("D", [120.0], targets=()))          # whole VEN: R = 150 − 120 = 30 > 25
    assert d.opt == "optOut" and "exceeds the contract limit 25 kW" in d.reason
    d = decide(m, event("E", [+10.0], "delta"))
    assert d.opt == "optOut" and "asks for more load" in d.reason


def test_whole_ven_setpoint_is_split_by_flexibility():
    """No target: the 120-kW setpoint is for both locations (baseline 150): R = 30, split 70:30 →
    21 kW at 671.1 (goal 79) and 9 kW at 675.3 (goal 41)."""
    d = decide(FlexibilityMapper(flex()), event("D", [120.0], targets=()))
    assert d.opt == "optIn"
    assert {g.location: (g.reduction_kw, g.goal_kw) for g in d.goals} == {
        "671.1": (pytest.approx(21.0), pytest.approx(79.0)), "675.3": (pytest.approx(9.0), pytest.approx(41.0))}


def test_contract_notice_hours_and_events():
    m = FlexibilityMapper(flex())
    # yellow needs 30 min notice: 50 kW (green 40 + yellow 10) announced 20 min ahead → out
    d = decide(m, event("N", [50.0]), notice_min=20.0)
    assert d.opt == "optOut" and "671.1 yellow: needs 30 min notice, has 20" in d.reason
    assert decide(m, event("N2", [60.0]), notice_min=20.0).opt == "optIn"      # green only: no notice needed
    m = FlexibilityMapper(flex())
    assert decide(m, event("A", [70.0, 50.0]), notice_min=90.0).opt == "optIn"  # yellow 0.5 h, 1 event booked
    later = NOON + timedelta(hours=3)
    d = decide(m, event("B", [-45.0, -45.0], "delta", start=later))             # yellow 5 kW for 1 h
    assert d.opt == "optOut" and "yellow: 1 h asked + 0.5 h booked exceed its 1 h of the day" in d.reason
    # an update of A without yellow releases A's booking: B fits then
    assert decide(m, event("A", [70.0, 60.0], mod=1), notice_min=90.0).opt == "optIn"
    assert decide(m, event("B", [-45.0, -45.0], "delta", start=later)).opt == "optIn"
    # green: 2 h a day; A and B booked 1 h each, half an hour more is refused
    d = decide(m, event("G", [-10.0], "delta", start=NOON + timedelta(hours=6)))
    assert d.opt == "optOut" and "green: 0.5 h asked + 2 h booked exceed its 2 h of the day" in d.reason
    # a cancellation releases the booking
    assert decide(m, event("B", [-45.0, -45.0], "delta", start=later, status="cancelled")).reason.startswith("cancelled")
    assert "B" not in m.booked
    assert decide(m, event("G", [-10.0], "delta", start=NOON + timedelta(hours=6))).opt == "optIn"


def test_contract_events_per_day_count_runs_of_intervals():
    """Green with 4 h but 2 events a day: one event with two separate intervals is two runs; with A's
    run booked, a third run is refused; back-to-back intervals are one run."""
    f = flex()
    f.contracts["green"] = TierContract(4.0, 2, 0.0, 0.05)
    m = FlexibilityMapper(f)
    assert decide(m, event("A", [80.0])).opt == "optIn"                         # green 20 kW, 1 run
    split = event("H", [-10.0, -10.0], "delta", start=NOON + timedelta(hours=2))
    split["event_signals"][0]["intervals"][1]["dtstart"] += timedelta(hours=1)   # a gap: two runs
    d = decide(m, split)
    assert d.opt == "optOut" and "green: 2 event(s) asked + 1 booked exceed its 2 events of the day" in d.reason
    assert decide(m, event("H", [-10.0, -10.0], "delta", start=NOON + timedelta(hours=2))).opt == "optIn"


def test_rules_over_real_yield_statistics():
    """Yield statistics of the VPP tests (2.1: green 40..80 kW, yellow 30, black 10 in hours 0..3):
    baseline = 60 + 30 + 10 = 100, P90 green 44 (≤ 100 held) + yellow 30 = 74 kW flexible.
    Setpoint 30 → R = 70 ≤ 74: green 44 + yellow 26, goal 30. Setpoint 20 → R = 80 > 74: out."""
    f = StatsFlexibility(portfolio(hours=4.0, events=2), fleet_stats(), confidence=0.9)
    start = datetime(1970, 1, 1, 1, tzinfo=timezone.utc)
    d = FlexibilityMapper(f).decide(event_from_dict(event("S", [30.0], start=start, targets=("2.1",))), 0)
    assert d.opt == "optIn" and d.flexible_kw == pytest.approx((74.0,))
    assert [(g.goal_kw, g.tier_kw) for g in d.goals] == [(pytest.approx(30.0), pytest.approx((44.0, 26.0)))]
    d = FlexibilityMapper(f).decide(event_from_dict(event("S", [20.0], start=start, targets=("2.1",))), 0)
    assert d.opt == "optOut" and "80 kW exceeds the 74 kW flexible (P90)" in d.reason
    late = datetime(1970, 1, 1, 9, tzinfo=timezone.utc)          # hour 9: no statistics
    d = FlexibilityMapper(f).decide(event_from_dict(event("S", [30.0], start=late, targets=("2.1",))), 0)
    assert d.opt == "optOut" and "no yield statistics for 2.1" in d.reason


# ---- the goal schedule -----------------------------------------------------------------------------
def test_goal_schedule_ramp_fallback_and_signed_dispatch():
    """A: 671.1 goals 70 then 50 from noon, ramp 5 min from the baseline 100: linear in process
    (85 at 11:57:30), in 1-min steps at their midpoints in the signed schedule: 97, 91, 85, 79, 73."""
    d = decide(FlexibilityMapper(flex()), event("A", [70.0, 50.0], ramp=timedelta(minutes=5)), notice_min=90.0)
    goal = AdrGoal({"671.1": 180.0}, fallback=ConstantGoal(180.0))
    goal.apply(d)
    assert evaluate(goal, "671.1", NOON_MS + 10 * MIN).kw == pytest.approx(70.0)
    assert evaluate(goal, "671.1", NOON_MS + 40 * MIN).kw == pytest.approx(50.0)
    assert goal.source("671.1", NOON_MS) == SOURCE_OPENADR
    assert goal.goal_kw("671.1", NOON_MS - 150_000) == pytest.approx(85.0)
    assert goal.goal_kw("671.1", NOON_MS + 60 * MIN) == 180.0 and goal.source("671.1", NOON_MS + 60 * MIN) == SOURCE_SCHEDULE
    points, until = goal.points("671.1", NOON_MS - 60 * MIN)
    assert [(ts - NOON_MS) // 1000 for ts, _ in points] == [-300, -240, -180, -120, -60, 0, 1800]
    assert [kw for _, kw in points] == pytest.approx([97.0, 91.0, 85.0, 79.0, 73.0, 70.0, 50.0])
    assert until == NOON_MS + 60 * MIN
    payload = goal.payloads(NOON_MS - 60 * MIN, 7, "vpp", KEY)["671.1"]
    controller = DispatchGoal({"vpp": KEY}, fallback=ConstantGoal(180.0))
    assert controller.offer("671.1", payload, NOON_MS - 60 * MIN) == ""
    for ts, kw in points:
        assert controller.goal_kw("671.1", ts + 30_000) == pytest.approx(kw)
        assert controller.source("671.1", ts) == SOURCE_DISPATCH
    assert controller.goal_kw("671.1", until) == 180.0
    goal.apply(decide(FlexibilityMapper(flex()), event("A", [], status="cancelled") | {
        "event_signals": event("A", [70.0])["event_signals"]}))
    assert goal.points("671.1", NOON_MS - 60 * MIN) is None


# ---- the VEN core ----------------------------------------------------------------------------------
def test_ven_publishes_withdraws_and_reports():
    pub = FakePublisher()
    goal = AdrGoal({"671.1": 180.0, "675.3": 90.0})
    fleet = FakeFleetState([TelemetryRow("671.1", NOON_MS + i * 2000, (40.0, 20.0, 10.0 + i), (True, False, False))
                            for i in range(10)])
    ven = Ven(FlexibilityMapper(flex()), goal, fleet=fleet, publisher=pub, signer=Signer("vpp", KEY),
              tiers=("green", "yellow"), clock_ms=lambda: NOON_MS - 90 * MIN)
    assert ven.handle_event(event("A", [70.0, 50.0])).opt == "optIn"
    assert [loc for loc, _ in pub.sent] == ["671.1"]
    sched = decode_dispatch(pub.sent[0][1], {"vpp": KEY})
    assert sched.points == ((NOON_MS, 70.0), (NOON_MS + 30 * MIN, 50.0))
    assert [r["goal_kw"] for r in ven.record.goals] == pytest.approx([70.0, 50.0])
    assert ven.record.goals[1]["yellow_kw"] == pytest.approx(10.0)
    # cancelled: the location gets its no-shed kW until the old end, under a newer dispatch id
    assert ven.handle_event(event("A", [70.0, 50.0], status="cancelled", mod=1)).opt == "optIn"
    withdrawn = decode_dispatch(pub.sent[1][1], {"vpp": KEY})
    assert withdrawn.points == ((NOON_MS - 90 * MIN, 180.0),) and withdrawn.valid_until_ts_ms == NOON_MS + 60 * MIN
    assert withdrawn.dispatch_id > sched.dispatch_id
    # telemetry: mean of total enabled kW in [now − 10 s, now): rows 0..4 → 40 + 20 + mean(10..14) = 72
    assert ven.report_kw("671.1", NOON_MS + 10_000, 10_000) == pytest.approx(72.0)
    assert ven.report_kw("675.3", NOON_MS + 10_000, 10_000) is None
    assert ven.record.reports == [{"ts_ms": NOON_MS + 10_000, "location": "671.1", "achieved_kw": pytest.approx(72.0),
                                   "goal_kw": None, "source": ""}]
    bad = ven.handle_event({"event_descriptor": {"event_id": "X"}, "event_signals": []})
    assert bad.opt == "optOut" and bad.reason.startswith("unreadable event: event_signals")
    assert [e["opt"] for e in ven.record.events] == ["optIn", "optIn", "optOut"]


def test_fake_mapper_drives_the_ven():
    m = FakeMapper()
    ven = Ven(m, AdrGoal({}), clock_ms=lambda: 5)
    assert ven.handle_event(event("Z", [1.0])).opt == "optOut" and m.calls == [("Z", 5)]


def test_rounds_fleet_state_follows_a_growing_rounds_csv(tmp_path):
    """The controller's rounds.csv (t_s from origin, enabled_t{i}_kw): mean of total enabled kW per
    span, re-read when the file grew; a missing file reads as no rounds."""
    from market.vpp.openadr import RoundsFleetState

    path = tmp_path / "rounds.csv"
    fleet = RoundsFleetState(path, ("green", "yellow", "black"), origin_ms=1_000_000)
    assert fleet.mean_kw("671.1", 0, 10**9) is None
    header = "t_s,group,enabled_t0_kw,enabled_t1_kw,enabled_t2_kw,p_off_t0,p_off_t1,p_off_t2\n"
    path.write_text(header + "".join(f"{t}.0,671.1,{10 + t},5,1,0,0,0\n" for t in range(4)))
    assert fleet.mean_kw("671.1", 1_000_000, 1_004_000) == pytest.approx(16 + 1.5)     # 10..13 + 5 + 1
    assert fleet.mean_kw("671.1", 1_004_000, 1_010_000) is None
    with path.open("a") as fh:
        fh.write("".join(f"{t}.0,671.1,{10 + t},5,1,0,0,0\n" for t in range(4, 6)))
    assert fleet.mean_kw("671.1", 1_004_000, 1_010_000) == pytest.approx(14.5 + 6)     # 14, 15 + 5 + 1
