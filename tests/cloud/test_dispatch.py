"""Dispatched goal schedules (cloud.dispatch): signing, validation naming the field, piecewise
lookup, replay/expiry, fallback, and the controller following a dispatch (ControllerCore)."""
import json
import random

import pytest

from cloud.dispatch import DispatchError, DispatchGoal, decode_dispatch, make_dispatch
from cloud.goals import ConstantGoal, GoalError, GoalSchedule
from cloud.goals import FractionOfDemand
from cloud.rounds import ControllerCore
from edge_agent import codec, security, topics
from tests.cloud.test_service_core import P_W, birth, state

KEY = b"d" * 32
KEYS = {"vpp": KEY}
T0 = 1_800_000_000_000


def payload(did=1, points=((T0, 40.0), (T0 + 60_000, 35.5)), until=T0 + 120_000, group="g1",
            issued=T0, key=KEY, key_id="vpp"):
    return make_dispatch(group, did, points, issued, until, key_id, key)


def test_piecewise_constant_lookup_and_roundtrip():
    s = decode_dispatch(payload(), KEYS)
    assert (s.group, s.dispatch_id, s.key_id) == ("g1", 1, "vpp")
    assert s.goal_kw_at(T0 - 1) is None                      # before the first point
    assert s.goal_kw_at(T0) == 40.0 and s.goal_kw_at(T0 + 59_999) == 40.0
    assert s.goal_kw_at(T0 + 60_000) == 35.5 and s.goal_kw_at(T0 + 119_999) == 35.5
    assert s.goal_kw_at(T0 + 120_000) is None                # valid_until is exclusive
    many = decode_dispatch(payload(points=[(T0 + 1000 * i, float(i)) for i in range(500)],
                                   until=T0 + 600_000), KEYS)
    assert [many.goal_kw_at(T0 + 1000 * i + 500) for i in (0, 1, 250, 499)] == [0.0, 1.0, 250.0, 499.0]


def _tamper(field, value):
    msg = json.loads(payload())
    msg[field] = value
    return security.sign({k: v for k, v in msg.items() if k != "sig"}, KEY)


@pytest.mark.parametrize("msg,field", [
    (_tamper("points", []), "points"),
    (_tamper("points", [[T0, 1.0], [T0, 2.0]]), "points[1].ts_ms"),
    (_tamper("points", [[T0, -1.0]]), "points[0].goal_kw"),
    (_tamper("points", [[T0, "1"]]), "points[0].goal_kw"),
    (_tamper("points", [[T0, 1.0, 2.0]]), "points[0]"),
    (_tamper("points", [[-5, 1.0]]), "points[0].ts_ms"),
    (_tamper("valid_until_ts_ms", T0 + 60_000), "valid_until_ts_ms"),
    (_tamper("group", "bad/group"), "group"),
    (_tamper("v", 2), "v"),
    (_tamper("dispatch_id", -1), "dispatch_id"),
    (_tamper("extra", 1), "extra"),
])
def test_malformed_fields_are_named(msg, field):
    with pytest.raises(DispatchError) as err:
        decode_dispatch(codec.dumps(msg), KEYS)
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_signature_and_key_checked():
    msg = json.loads(payload())
    msg["points"][0][1] = 1000.0                       # altered after signing
    with pytest.raises(DispatchError, match="^sig: bad signature"):
        decode_dispatch(json.dumps(msg).encode(), KEYS)
    with pytest.raises(DispatchError, match="^sig: unknown key_id"):
        decode_dispatch(payload(key_id="other"), KEYS)
    with pytest.raises(DispatchError, match="^payload"):
        decode_dispatch(b"\xff{", KEYS)


def test_offer_replay_expiry_future_and_topic_group():
    g = DispatchGoal(KEYS, fallback=ConstantGoal(50.0))
    assert isinstance(g, GoalSchedule)
    assert g.goal_kw("g1", T0) == 50.0                               # nothing in force: fallback
    assert g.offer("g1", payload(did=5), T0) == ""
    assert g.goal_kw("g1", T0 + 1) == 40.0 and g.goal_kw("g2", T0 + 1) == 50.0
    assert g.offer("g1", payload(did=5), T0).startswith("dispatch_id: replay")
    assert g.offer("g1", payload(did=4, points=[(T0, 1.0)]), T0).startswith("dispatch_id: replay")
    assert g.offer("g2", payload(did=9), T0).startswith("group: 'g1' sent on the topic of 'g2'")
    assert g.offer("g1", payload(did=6), T0 + 120_000).startswith("valid_until_ts_ms: expired")
    assert g.offer("g1", payload(did=6, issued=T0 + 60_000), T0).startswith("issued_ts_ms: in the future")
    assert g.offer("g1", b"{}", T0).startswith("v: missing")
    assert g.goal_kw("g1", T0 + 1) == 40.0                           # rejections changed nothing
    assert g.accepted == 1 and sum(g.rejected.values()) == 6
    assert g.offer("g1", payload(did=6, points=[(T0, 10.0)], until=T0 + 30_000), T0) == ""
    assert g.goal_kw("g1", T0 + 1) == 10.0                            # a newer id replaces it all
    assert g.goal_kw("g1", T0 + 30_000) == 50.0                       # ended: back to the fallback
    with pytest.raises(GoalError, match="no dispatch in force"):
        DispatchGoal(KEYS).goal_kw("g1", T0)


def test_random_garbage_never_raises():
    rng = random.Random(7)
    g = DispatchGoal(KEYS, fallback=ConstantGoal(1.0))
    good = payload()
    for value in (10 ** 400, -(10 ** 400), 1e308, [], {}, None, True, "1", [1], [[1, 2]] * 3000):
        for field in ("points", "dispatch_id", "issued_ts_ms", "valid_until_ts_ms", "group", "v"):
            msg = json.loads(good)
            msg[field] = value
            assert g.offer("g1", json.dumps(msg).encode(), T0) != ""
        msg = json.loads(good)
        msg["points"] = [[T0, value]]
        assert g.offer("g1", json.dumps(msg).encode(), T0).startswith(("points[0]", "sig"))
    for _ in range(3000):
        raw = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        assert isinstance(g.offer("g1", bytes(raw), T0), str)
    assert g.goal_kw("g1", T0) in (1.0, 40.0)


def test_topic_is_in_the_tree():
    assert topics.dispatch("bus1.a") == "colorgrid/v1/dispatch/bus1.a"
    assert topics.parse("colorgrid/v1/dispatch/bus1.a") == ("dispatch", "bus1.a", "")
    for bad in ("colorgrid/v1/dispatch/", "colorgrid/v1/dispatch/a/b", "colorgrid/v1/dispatch/+"):
        with pytest.raises(topics.TopicError):
            topics.parse(bad)


def test_controller_follows_dispatch_then_its_fallback():
    kw = 5.0                                                          # the group's enabled demand
    goal = DispatchGoal(KEYS, fallback=FractionOfDemand(ConstantGoal(0.8)))
    c = ControllerCore("ctl1", goal, "k1", b"k" * 32, dispatches=goal)
    c.handle(*birth("a"), T0)
    c.handle(*state("a", 1, P_W, ts=T0), T0)
    c.control_round(T0)
    assert c.records[-1].goal_kw == pytest.approx(0.8 * kw)            # fallback: 80 % of demand
    assert c.handle(topics.dispatch("g1"), payload(did=1, points=[(T0 + 2000, 3.5)], until=T0 + 6000),
                    T0 + 100) == []
    c.handle(*state("a", 2, P_W, ts=T0 + 2000), T0 + 2000)
    c.control_round(T0 + 2000)
    assert c.records[-1].goal_kw == 3.5 and c.records[-1].goal_source == "dispatch"
    c.handle(*state("a", 3, P_W, ts=T0 + 6000), T0 + 6000)
    c.control_round(T0 + 6000)
    assert c.records[-1].goal_kw == pytest.approx(0.8 * kw)            # schedule over
    assert c.records[-1].goal_source == "fallback"
    before = sum(c.rejected.values())
    c.handle(topics.dispatch("g1"), payload(did=1), T0 + 6100)        # replay
    assert sum(c.rejected.values()) == before + 1
    plain = ControllerCore("ctl2", ConstantGoal(1.0), "k1", b"k" * 32)
    plain.handle(topics.dispatch("g1"), payload(), T0)
    assert plain.rejected == {"dispatch: this controller does not take dispatched goals": 1}
