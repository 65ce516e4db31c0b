"""Issue 16.4: one gateway must not blind the controller. Enrollment (ids, keys, kW limits),
declared-kW limits, reports that contradict the birth inventory, one gateway's share of a group
capped (outliers flagged in the round records), reports signed with the gateway's own key."""
import json

import numpy as np
import pytest

from cloud.enrollment import Enrollment, EnrollmentError, GatewayPolicy
from cloud.goals import ConstantGoal, FractionOfDemand
from cloud.rounds import ControllerCore
from edge_agent import codec, security, topics

KEY = b"k" * 32
TIERS = ["green", "yellow", "black"]
GW_KEYS = {f"gw-{i}": bytes([65 + i]) * 32 for i in range(10)}


def birth(gid, n=5, tier_w=(500, 300, 200), group="g1", bd=0, key=None, ts=0):
    devices = [{"device_id": f"d{i}", "tier_w": list(tier_w)} for i in range(n)]
    payload = codec.encode_birth(gid, group, bd, ts, TIERS, devices, {"round_ms": 2000})
    return topics.birth(gid), sign(payload, gid, key)


def state(gid, seq, p_w, count=None, group="g1", bd=0, key=None, ts=0, fail_safe=False):
    count = count or [[5, 0, 0, 0]] * len(p_w)
    payload = codec.encode_state(gid, group, bd, seq, ts, seq, p_w, count, -1, fail_safe, 0)
    return topics.state(gid), sign(payload, gid, key)


def sign(payload, key_id, key):
    return payload if key is None else security.sign_report(payload, key_id, key)


REAL_W = [[2500, 0, 0, 0], [1500, 0, 0, 0], [1000, 0, 0, 0]]   # 5 devices × 1 kW, all enabled
HALF = FractionOfDemand(ConstantGoal(0.5))


def fleet(c, n=10, keys=None, t=0):
    for i in range(n):
        gid = f"gw-{i}"
        key = (keys or {}).get(gid)
        c.handle(*birth(gid, key=key), t)
        c.handle(*state(gid, 1, REAL_W, key=key), t + 10)


def forged(c, t=100, n_devices=4_000, tier_w=(50_000, 30_000, 20_000)):
    """A new id claiming 400 MW (4,000 devices × 100 kW, each device plausible): a birth and
    one state."""
    big = [[w * n_devices for w in (tier_w[0], 0, 0, 0)],
           [tier_w[1] * n_devices, 0, 0, 0], [tier_w[2] * n_devices, 0, 0, 0]]
    c.handle(*birth("evil", n=n_devices, tier_w=tier_w), t)
    return c.handle(*state("evil", 1, big, count=[[n_devices, 0, 0, 0]] * 3), t + 10)


def test_a_forged_500_mw_gateway_no_longer_moves_the_goal_even_without_enrollment():
    """The issue's case: goal 31 kW → 240 MW after one birth + one state of a new id."""
    c = ControllerCore("ctl1", HALF, "k1", KEY)
    fleet(c)
    c.control_round(2000)
    assert c.records[-1].goal_kw == pytest.approx(25.0)
    forged(c, 2100)
    c.control_round(4000)
    rec = c.records[-1]
    # capped at 10 × the median gateway of the group (5 kW): at most 50 kW more demand, flagged
    assert rec.goal_kw <= 0.5 * (50.0 + 10 * 5.0) + 1e-6
    assert rec.outliers == ["evil"] and rec.n_outliers == 1
    # one device claiming 500 MW is over the default maximum per device: the birth is rejected
    one = ControllerCore("ctl1", HALF, "k1", KEY)
    fleet(one)
    one.handle(*birth("evil2", n=1, tier_w=(250_000_000, 150_000_000, 100_000_000)), 4100)
    assert one.rejected == {"birth: devices": 1} and "evil2" not in one.aggregator.sessions


def test_with_enrollment_an_unknown_gateway_is_ignored_entirely():
    enr = Enrollment.parse({"gateways": {gid: {} for gid in GW_KEYS}})
    c = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(enrollment=enr))
    fleet(c)
    c.control_round(2000)
    out = forged(c, 2100)
    assert out == []                                      # no rebirth asked of it either
    c.control_round(4000)
    assert c.records[-1].goal_kw == pytest.approx(25.0) and c.records[-1].n_live == 10
    assert c.rejected.get("birth: gateway_id") == 1 and c.rejected.get("state: gateway_id") == 1
    assert "evil" not in c.aggregator.sessions


def test_declared_kw_limits_from_the_enrollment_record_and_per_device():
    enr = Enrollment.parse({"max_device_kw": 20, "gateways": {"gw-0": {"max_kw": 4.0}, "gw-1": {}}})
    c = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(enrollment=enr))
    c.handle(*birth("gw-0"), 0)                            # 5 kW > its 4 kW
    assert c.rejected == {"birth: devices": 1} and "gw-0" not in c.aggregator.sessions
    c.handle(*birth("gw-1", n=1, tier_w=(25_000, 0, 0)), 0)   # one 25 kW device > 20 kW
    assert c.rejected["birth: devices"] == 2
    c.handle(*birth("gw-1"), 0)
    assert c.aggregator.sessions["gw-1"].online
    # no enrollment: a configured maximum per gateway still holds
    c2 = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(max_gateway_kw=3.0))
    c2.handle(*birth("gw-2"), 0)
    assert c2.rejected == {"birth: devices": 1}


def test_reports_contradicting_the_birth_inventory_are_rejected():
    c = ControllerCore("ctl1", ConstantGoal(3.0), "k1", KEY)
    c.handle(*birth("a"), 0)                                           # 5 devices, 2.5/1.5/1 kW
    c.handle(*state("a", 1, [[9000, 0, 0, 0], [1500, 0, 0, 0], [1000, 0, 0, 0]]), 10)
    c.handle(*state("a", 2, REAL_W, count=[[6, 0, 0, 0], [5, 0, 0, 0], [5, 0, 0, 0]]), 20)
    assert c.rejected == {"state: p_w": 1, "state: count": 1}
    assert c.aggregator.sessions["a"].report_kw is None                # neither was used
    c.handle(*state("a", 3, [[2600, 0, 0, 0], [1500, 0, 0, 0], [1000, 0, 0, 0]]), 30)   # within 10 %
    assert c.aggregator.sessions["a"].report_kw is not None


def test_signed_reports_only_from_the_gateways_own_key():
    enr = Enrollment.parse({"gateways": {gid: {"keys": {gid: key.hex()}} for gid, key in GW_KEYS.items()}})
    c = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(enrollment=enr))
    fleet(c, 3, keys=GW_KEYS)
    assert sum(c.rejected.values()) == 0 and len(c.aggregator.groups()) == 1
    c.handle(*state("gw-0", 2, REAL_W), 2010)                          # unsigned
    c.handle(*state("gw-1", 2, REAL_W, key=GW_KEYS["gw-2"]), 2010)     # another gateway's key
    tampered = json.loads(state("gw-2", 2, REAL_W, key=GW_KEYS["gw-2"])[1])
    tampered["p_w"][0][0] = 0
    c.handle(topics.state("gw-2"), codec.dumps(tampered), 2010)
    assert c.rejected == {"state: sig": 3}
    c.handle(topics.death("gw-0"), codec.encode_death("gw-0", 0, 50), 50)   # unsigned Will: ignored
    assert c.aggregator.sessions["gw-0"].online and c.rejected["death: sig"] == 1
    c.handle(*state("gw-0", 2, REAL_W, key=GW_KEYS["gw-0"], ts=2000), 2020)   # its own key: taken
    assert c.rejected == {"state: sig": 3, "death: sig": 1}
    assert c.aggregator.sessions["gw-0"].report_rx_ms == 2020


def test_a_replayed_signed_state_is_rejected():
    enr = Enrollment.parse({"gateways": {"gw-0": {"keys": {"gw-0": GW_KEYS["gw-0"].hex()}}}})
    c = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(enrollment=enr))
    c.handle(*birth("gw-0", key=GW_KEYS["gw-0"]), 0)
    old = state("gw-0", 1, REAL_W, key=GW_KEYS["gw-0"], ts=1000)
    c.handle(*old, 1000)
    c.handle(*state("gw-0", 2, REAL_W, key=GW_KEYS["gw-0"], ts=3000), 3000)
    c.handle(*old, 3100)
    assert c.rejected == {"state: ts_ms": 1}


@pytest.mark.parametrize("doc, field", [
    ([], "enrollment"),
    ({"gateways": []}, "enrollment.gateways"),
    ({"gateways": {"a/b": {}}}, "enrollment.gateways"),
    ({"gateways": {"a": {"max_kw": -1}}}, "enrollment.gateways.a.max_kw"),
    ({"gateways": {"a": {"max_kw": float("nan")}}}, "enrollment.gateways.a.max_kw"),
    ({"gateways": {"a": {"keys": {"k": "zz"}}}}, "enrollment.gateways.a.keys"),
    ({"gateways": {"a": {"colour": 1}}}, "enrollment.gateways.a.colour"),
    ({"gateways": {}, "max_device_kw": 0}, "enrollment.max_device_kw"),
    ({"gateways": {}, "extra": 1}, "enrollment.extra"),
])
def test_enrollment_errors_name_the_field(doc, field):
    with pytest.raises(EnrollmentError) as err:
        Enrollment.parse(doc)
    assert str(err.value).startswith(field), str(err.value)


def test_enrollment_file(tmp_path):
    path = tmp_path / "enroll.json"
    path.write_text(json.dumps({"gateways": {"gw-0": {"keys": {"gw-0": GW_KEYS["gw-0"].hex()}, "max_kw": 9,
                                                      "group": "g1"}}}))
    enr = Enrollment.from_file(path)
    assert enr.records["gw-0"].max_kw == 9.0 and enr.records["gw-0"].keys == {"gw-0": GW_KEYS["gw-0"]}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(EnrollmentError, match="^--enrollment"):
        Enrollment.from_file(tmp_path / "bad.json")
    c = ControllerCore("ctl1", HALF, "k1", KEY, policy=GatewayPolicy(enrollment=enr))
    c.handle(*birth("gw-0", group="g2", key=GW_KEYS["gw-0"]), 0)       # enrolled for g1
    assert c.rejected == {"birth: group": 1}


def test_outlier_cap_keeps_the_fleet_controllable_and_honest_gateways_uncapped():
    c = ControllerCore("ctl1", HALF, "k1", KEY)
    fleet(c, 4)
    c.handle(*birth("big", n=30), 0)                                      # 30 kW: 6 × the median
    c.handle(*state("big", 1, (np.array(REAL_W) * 6).tolist(), count=[[30, 0, 0, 0]] * 3), 10)
    c.control_round(2000)
    rec = c.records[-1]
    assert rec.n_outliers == 0 and rec.goal_kw == pytest.approx(0.5 * (20 + 30))
