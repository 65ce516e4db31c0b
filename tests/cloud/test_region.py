"""Regional pre-aggregation (cloud.region): membership, the aggregator core's sums (hand-computed),
staleness, signatures, partial merging, and the controller consuming region sums."""
import json

import numpy as np
import pytest

from cloud.goals import ConstantGoal
from cloud.region import (RegionCore, RegionError, RegionInbox, RegionMap, RegionView, decode_region_sum,
                          make_region_sum, parse_sum_topic, shared_state_filter, sum_topic)
from cloud.rounds import ControllerCore
from edge_agent import codec, security, topics

KEY = b"r" * 32
CTL_KEY = b"c" * 32
TIERS = ["green", "yellow", "black"]
MAP = RegionMap({"north": {"prefixes": ["n-"], "gateways": ["odd-1"]},
                 "south": {"prefixes": ["s-", "n-s"]}})


def birth(gid, group="g0", bd=1, ts=1000):
    devices = [{"device_id": f"d{i}", "tier_w": [250, 250, 250]} for i in range(4)]   # 1 kW per tier
    return topics.birth(gid), codec.encode_birth(gid, group, bd, ts, TIERS, devices, {"round_ms": 2000})


def state(gid, p_w, ts, group="g0", bd=1, seq=1, fail_safe=False):
    count = [[1 if x else 0 for x in row] for row in p_w]
    return topics.state(gid), codec.encode_state(gid, group, bd, seq, ts, 1, p_w, count, -1, fail_safe, 0)


def sums(out):
    return {codec.loads(p)["group"]: codec.loads(p) for _, p, _, _ in out}


def test_membership_by_list_then_longest_prefix():
    assert MAP.region_of("odd-1") == "north"
    assert MAP.region_of("n-00001") == "north"
    assert MAP.region_of("n-s7") == "south"          # the longer prefix wins
    assert MAP.region_of("x-1") is None
    with pytest.raises(RegionError, match="regions.b.gateways\\[0\\]: a already in region a"):
        RegionMap({"a": {"gateways": ["a"]}, "b": {"gateways": ["a"]}})
    with pytest.raises(RegionError, match="regions.a: no prefixes and no gateways"):
        RegionMap({"a": {}})


def test_region_map_file_errors_name_the_flag(tmp_path):
    f = tmp_path / "regions.json"
    f.write_text(json.dumps({"regions": {"north": {"prefixes": ["n-"]}}}))
    assert RegionMap.from_file(f).regions == ["north"]
    f.write_text(json.dumps({"regions": {"north": {"prefix": ["n-"]}}}))
    with pytest.raises(RegionError, match="^--regions: .*regions.north: expected"):
        RegionMap.from_file(f)


def test_topics():
    assert sum_topic("north", "671.1") == "colorgrid/v1/region/north/671.1/sum"
    assert parse_sum_topic("colorgrid/v1/region/north/671.1/sum") == ("north", "671.1")
    assert parse_sum_topic(topics.state("gw-1")) is None
    with pytest.raises(RegionError):
        parse_sum_topic("colorgrid/v1/region/north/sum")
    assert shared_state_filter("north") == "$share/north/colorgrid/v1/gw/+/state"


def test_exclusive_sum_hand_computed_with_stale_and_missing():
    core = RegionCore("north", MAP, "a1", "rk", KEY, round_ms=2000)
    for gid in ("n-1", "n-2", "n-3", "odd-1", "s-1"):
        core.handle(*birth(gid), 1000)
    core.handle(*state("n-1", [[100, 0, 200, 0], [0, 50, 0, 0], [300, 0, 0, 0]], 2500), 2500)
    core.handle(*state("n-2", [[10, 20, 30, 40], [1, 2, 3, 4], [5, 0, 0, 0]], 2600), 2600)
    core.handle(*state("s-1", [[999, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 2600), 2600)   # not ours
    msg = sums(core.tick(2000, 3700))["g0"]
    assert msg["round"] == 1 and msg["region"] == "north" and not msg["shared"]
    assert msg["p_w"] == [[110, 20, 230, 40], [1, 52, 3, 4], [305, 0, 0, 0]]
    assert msg["count"] == [[2, 1, 2, 1], [1, 2, 1, 1], [2, 0, 0, 0]]
    assert msg["covered"] == ["n-1", "n-2"] and msg["missing"] == ["n-3", "odd-1"]
    assert msg["stale"] == [] and msg["capacity_w"] == 6000
    assert (msg["ts_ms"], msg["oldest_ts_ms"]) == (2600, 2500)
    # next window: n-2 reports again, n-1 is carried (named stale), n-3 still missing
    core.handle(*state("n-2", [[10, 20, 30, 40], [1, 2, 3, 4], [6, 0, 0, 0]], 4600, seq=2), 4600)
    msg = sums(core.tick(4000, 5700))["g0"]
    assert msg["p_w"] == [[110, 20, 230, 40], [1, 52, 3, 4], [306, 0, 0, 0]]
    assert msg["stale"] == ["n-1"] and msg["missing"] == ["n-3", "odd-1"]
    # beyond max_carry (5 rounds = 10 s) n-1 is missing, not carried; nothing heard at all: no sum
    msg = sums(core.tick(12000, 13000))["g0"]              # n-1 heard 10.5 s ago, n-2 8.4 s
    assert msg["covered"] == ["n-2"] and msg["stale"] == ["n-2"]
    assert msg["missing"] == ["n-1", "n-3", "odd-1"]
    assert core.tick(14000, 15000) == []


def test_shared_partials_carry_nothing_and_merge_disjoint():
    a = RegionCore("north", MAP, "a1", "rk", KEY, shared=True)
    b = RegionCore("north", MAP, "b1", "rk", KEY, shared=True)
    assert a.subscriptions()[-1] == "$share/north/colorgrid/v1/gw/+/state"
    for core in (a, b):
        for gid in ("n-1", "n-2", "n-3"):
            core.handle(*birth(gid), 1000)
    a.handle(*state("n-1", [[100, 0, 0, 0], [0, 0, 0, 0], [7, 0, 0, 0]], 2500), 2500)
    b.handle(*state("n-2", [[0, 0, 50, 0], [20, 0, 0, 0], [0, 0, 0, 0]], 2500), 2500)
    pa, pb = a.tick(2000, 3700), b.tick(2000, 3700)
    assert codec.loads(pa[0][1])["missing"] == []          # cannot know: a peer may hold it
    assert b.tick(4000, 5700) == []                        # nothing heard: nothing said (no carry)
    inbox = RegionInbox({"rk": KEY})
    assert inbox.offer(*pa[0][:2], 3700)[0] == ""
    reason, merged = inbox.offer(*pb[0][:2], 3710)
    assert reason == ""
    assert merged.p_w.tolist() == [[100, 0, 50, 0], [20, 0, 0, 0], [7, 0, 0, 0]]
    assert merged.covered == {"n-1", "n-2"} and sorted(merged.partials) == ["a1", "b1"]
    # re-delivery of a's partial (QoS 1) replaces, never adds
    _, again = inbox.offer(*pa[0][:2], 3720)
    assert again.p_w.tolist() == merged.p_w.tolist()


def test_shared_report_that_missed_its_tick_is_not_counted_in_the_next_window():
    """Under load gw n-1's report of round 1 (ts 2500) reaches a1 only after a1's tick of round 1;
    its report of round 2 (ts 4500) goes to b1. Counted by a1 in round 2 it would make both
    partials of round 2 claim n-1 (the controller had to leave one out); it is dropped instead."""
    a = RegionCore("north", MAP, "a1", "rk", KEY, shared=True)
    b = RegionCore("north", MAP, "b1", "rk", KEY, shared=True)
    for core in (a, b):
        for gid in ("n-1", "n-2"):
            core.handle(*birth(gid), 1000)
    a.handle(*state("n-2", [[10, 0, 0, 0]] * 3, 2400), 2400)
    b.handle(*state("n-1", [[1, 0, 0, 0]] * 3, 500), 600)        # round 0: nothing to do with it
    a.tick(2000, 3700), b.tick(2000, 3700)
    a.handle(*state("n-1", [[100, 0, 0, 0]] * 3, 2500, seq=2), 3800)   # late: after a's tick of round 1
    a.handle(*state("n-2", [[20, 0, 0, 0]] * 3, 4400, seq=2), 4400)
    b.handle(*state("n-1", [[200, 0, 0, 0]] * 3, 4500, seq=3), 4500)   # on time, at the peer
    pa, pb = a.tick(4000, 5700), b.tick(4000, 5700)
    assert codec.loads(pa[0][1])["covered"] == ["n-2"] and a.counters["late"] == 1
    assert codec.loads(pb[0][1])["covered"] == ["n-1"]
    inbox = RegionInbox({"rk": KEY})
    inbox.offer(*pa[0][:2], 5700)
    _, merged = inbox.offer(*pb[0][:2], 5710)
    assert merged.overlaps == 0 and merged.covered == {"n-1", "n-2"}
    assert merged.p_w[0].tolist() == [220, 0, 0, 0]                     # each gateway once, its newest


def test_overlapping_partial_is_left_out():
    inbox = RegionInbox({"rk": KEY})
    p = dict(shared=True, p_w=[[100, 0, 0, 0]] * 3, count=[[1, 0, 0, 0]] * 3, capacity_w=3000,
             stale=[], missing=[], fail_safe=[], key_id="rk", key=KEY)
    m1 = make_region_sum("north", "g0", "a1", 1, 2500, 2500, 3700, covered=["n-1", "n-2"], **p)
    m2 = make_region_sum("north", "g0", "b1", 1, 2500, 2500, 3700, covered=["n-2"], **p)
    inbox.offer(sum_topic("north", "g0"), m1, 3700)
    _, merged = inbox.offer(sum_topic("north", "g0"), m2, 3700)
    assert merged.covered == {"n-1", "n-2"} and merged.overlaps == 1
    assert merged.p_w[0, 0] == 100


def test_signature_verified_and_forgeries_rejected():
    core = RegionCore("north", MAP, "a1", "rk", KEY)
    core.handle(*birth("n-1"), 1000)
    core.handle(*state("n-1", [[100, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 2500), 2500)
    topic, payload, qos, retain = core.tick(2000, 3700)[0]
    assert (qos, retain) == (1, False)
    assert decode_region_sum(topic, payload, {"rk": KEY})["p_w"][0][0] == 100
    forged = json.loads(payload)
    forged["p_w"][0][0] = 400_000_000
    with pytest.raises(RegionError, match="^sig: bad signature"):
        decode_region_sum(topic, json.dumps(forged, sort_keys=True).encode(), {"rk": KEY})
    resigned = security.sign({k: v for k, v in forged.items() if k != "sig"}, b"x" * 32)
    with pytest.raises(RegionError, match="^sig: bad signature"):
        decode_region_sum(topic, codec.dumps(resigned), {"rk": KEY})
    with pytest.raises(RegionError, match="^sig: unknown key_id"):
        decode_region_sum(topic, payload, {"other": KEY})
    with pytest.raises(RegionError, match="^region: .* does not match topic"):
        decode_region_sum(sum_topic("south", "g0"), payload, {"rk": KEY})


def _controller(goal_kw=1.0):
    view = RegionView(MAP, {"rk": KEY}, round_ms=2000)
    return ControllerCore("ctl", ConstantGoal(goal_kw), "k1", CTL_KEY, regions=view, round_ms=2000)


def test_controller_uses_region_sums_and_rejects_forged_ones():
    ctl = _controller(goal_kw=2.0)
    assert "colorgrid/v1/region/+/+/sum" in ctl.subscriptions()
    assert topics.ALL_STATES not in ctl.subscriptions() and topics.ALL_GATEWAYS not in ctl.subscriptions()
    agg = RegionCore("north", MAP, "a1", "rk", KEY)
    for gid in ("n-1", "n-2"):
        ctl.handle(*birth(gid), 1000)
        agg.handle(*birth(gid), 1000)
    # a gateway state reaching the controller is not counted twice (its region sums it)
    ctl.handle(*state("n-1", [[3000, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 2500), 2500)
    assert ctl.control_round(4000) == []                 # no region sum yet: no vector
    agg.handle(*state("n-1", [[1000, 0, 0, 0], [1000, 0, 0, 0], [1000, 0, 0, 0]], 4500), 4500)
    agg.handle(*state("n-2", [[1000, 0, 0, 0], [1000, 0, 0, 0], [1000, 0, 0, 0]], 4500), 4500)
    for topic, payload, _, _ in agg.tick(4000, 5700):
        assert ctl.handle(topic, payload, 5700) == []
    bad = json.loads(make_region_sum("north", "g0", "evil", 2, 5000, 5000, 5800, False,
                                     [[0, 0, 0, 0]] * 3, [[0, 0, 0, 0]] * 3, 0, [], [], [], [],
                                     "rk", b"e" * 32))
    assert ctl.handle(sum_topic("north", "g0"), json.dumps(bad).encode(), 5800) == []
    assert ctl.rejected == {"region_sum: sig": 1}
    out = ctl.control_round(6000)
    assert len(out) == 1 and out[0][0] == topics.vector("g0")
    rec = ctl.records[-1]
    assert (rec.n_live, rec.n_fresh, rec.n_missing) == (2, 2, 0)
    assert rec.measured_kw == pytest.approx(6.0)         # EF + ER of both gateways: 2 × 3 kW
    assert rec.state_kw[2][0] == pytest.approx(2.0)      # black EF from the region sum
    vec = codec.decode_vector(out[0][1])
    assert security.verify(vec, {"k1": CTL_KEY}) == ""


def test_controller_scales_a_region_for_its_unheard_gateways():
    ctl = _controller(goal_kw=100.0)
    agg = RegionCore("north", MAP, "a1", "rk", KEY)
    for gid in ("n-1", "n-2", "n-3", "n-4"):
        ctl.handle(*birth(gid), 1000)
        agg.handle(*birth(gid), 1000)
    agg.handle(*state("n-1", [[1000, 0, 0, 0], [1000, 0, 0, 0], [1000, 0, 0, 0]], 4500), 4500)
    for topic, payload, _, _ in agg.tick(4000, 5700):
        ctl.handle(topic, payload, 5700)
    ctl.control_round(6000)
    rec = ctl.records[-1]
    assert (rec.n_live, rec.n_fresh, rec.n_missing) == (4, 1, 3)
    # the estimate stands in for the four gateways: 4 × 3 kW enabled demand
    assert np.sum(rec.state_kw) == pytest.approx(12.0, rel=0.05)


def test_controller_merges_shared_partials_and_names_fail_safe():
    ctl = _controller(goal_kw=100.0)
    a = RegionCore("north", MAP, "a1", "rk", KEY, shared=True)
    b = RegionCore("north", MAP, "b1", "rk", KEY, shared=True)
    for gid in ("n-1", "n-2"):
        for core in (a, b):
            core.handle(*birth(gid), 1000)
        ctl.handle(*birth(gid), 1000)
    a.handle(*state("n-1", [[1000, 0, 0, 0], [0, 0, 0, 0], [1000, 0, 0, 0]], 4500, fail_safe=True), 4500)
    b.handle(*state("n-2", [[0, 0, 1000, 0], [1000, 0, 0, 0], [1000, 0, 0, 0]], 4500), 4500)
    for core in (a, b):
        for topic, payload, _, _ in core.tick(4000, 5700):
            ctl.handle(topic, payload, 5700)
    ctl.control_round(6000)
    rec = ctl.records[-1]
    assert (rec.n_live, rec.n_fresh, rec.n_missing, rec.n_fail_safe) == (2, 2, 0, 1)
    assert rec.measured_kw == pytest.approx(4.0)


def test_stale_or_future_region_sums_rejected():
    inbox = RegionInbox({"rk": KEY}, round_ms=2000)
    msg = make_region_sum("north", "g0", "a1", 1, 2500, 2500, 3700, False, [[1, 0, 0, 0]] * 3,
                          [[1, 0, 0, 0]] * 3, 3000, ["n-1"], [], [], [], "rk", KEY)
    assert inbox.offer(sum_topic("north", "g0"), msg, 3700 + 10_001)[0].startswith("issued_ts_ms: ")
    assert inbox.offer(sum_topic("north", "g0"), msg, 3700 - 5_001)[0].startswith("issued_ts_ms: ")
    with pytest.raises(RegionError, match="^stale: lists a gateway not in covered"):
        make_region_sum("north", "g0", "a1", 1, 2500, 2500, 3700, False, [[1, 0, 0, 0]] * 3,
                        [[1, 0, 0, 0]] * 3, 3000, ["n-1"], ["n-2"], [], [], "rk", KEY)
