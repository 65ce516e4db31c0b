"""ControllerCore (the service's logic without I/O): births/states/deaths in, signed vectors out;
bad messages rejected with a reason and never raised; round ids survive a restart via the registry."""
import numpy as np
import pytest

from cloud.control_law import ControlParams, compute_control
from cloud.goals import ConstantGoal
from cloud.registry import SqliteRegistry
from cloud.goals import FractionOfDemand, GoalSchedule
from cloud.rounds import ControllerCore
from edge_agent import codec, security, topics

KEY = b"k" * 32
TIERS = ["green", "yellow", "black"]


def birth(gid, group="g1", bd=0, tier_w=(1000, 1000, 500), n=2, ts=0, params=None):
    devices = [{"device_id": f"d{i}", "tier_w": list(tier_w)} for i in range(n)]
    return topics.birth(gid), codec.encode_birth(gid, group, bd, ts, TIERS, devices,
                                                 params or {"round_ms": 2000})


def state(gid, seq, p_w, group="g1", bd=0, ts=0, fail_safe=False):
    count = [[1, 0, 0, 0]] * len(p_w)
    return topics.state(gid), codec.encode_state(gid, group, bd, seq, ts, seq, p_w, count, -1, fail_safe, 0)


def core(registry=None, goal=None, **kw):
    return ControllerCore("ctl1", goal or ConstantGoal(3.0), "k1", KEY, registry=registry, **kw)


P_W = [[2000, 0, 0, 0], [1000, 1000, 0, 0], [1000, 0, 0, 0]]   # 5 kW enabled, 2 kW flexible green


def test_round_publishes_verified_vector_equal_to_control_law():
    c = core(params=ControlParams(ramp_share_per_round=0.0))   # the law alone, no recovery ramp
    for t, p in (birth("a"), state("a", 1, P_W)):
        assert c.handle(t, p, 100) == []
    out = c.control_round(2000)
    assert len(out) == 1
    topic, payload, qos, retain = out[0]
    assert (topic, qos, retain) == (topics.vector("g1"), 1, False)
    msg = codec.decode_vector(payload)
    guard = security.VectorGuard({"k1": KEY}, "g1")
    assert guard.check(msg, 2500) == ""
    want = compute_control(np.array(P_W) / 1000.0, 3.0, c.params)
    np.testing.assert_allclose(msg["p_off"], want.p_off, atol=1e-6)
    np.testing.assert_allclose(msg["p_on"], want.p_on, atol=1e-6)
    assert msg["p_off"][0] > 0 and msg["expires_ts_ms"] == 2000 + c.ttl_ms
    rec = c.records[-1]
    assert (rec.goal_kw, rec.measured_kw, rec.n_fresh) == (3.0, 5.0, 1)


def test_bad_messages_are_rejected_with_reason_not_raised():
    c = core()
    c.handle(*birth("a"), 0)
    bad = [
        ("colorgrid/v1/gw/a/state", b"{not json"),
        ("colorgrid/v1/gw/a/state", b'{"v":1}'),
        ("colorgrid/v1/gw/b/birth", birth("a")[1]),           # id does not match topic
        ("elsewhere/topic", b"{}"),
        ("colorgrid/v1/gw/a/state", b"\xff\xfe"),
        (topics.state("a"), codec.dumps({"v": 1})),
    ]
    for topic, payload in bad:
        assert c.handle(topic, payload, 10) == []
    assert sum(c.rejected.values()) == len(bad)
    assert any(k.startswith("topic") for k in c.rejected)
    assert any("gateway_id" in k for k in c.rejected)
    # session unaffected: a good report still counts
    c.handle(*state("a", 1, P_W), 20)
    assert c.aggregator.snapshot("g1", 20).n_fresh == 1


def test_seq_gap_sends_signed_rebirth_command():
    c = core()
    c.handle(*birth("a"), 0)
    assert c.handle(*state("a", 1, P_W), 10) == []
    out = c.handle(*state("a", 5, P_W), 20)
    assert [o[0] for o in out] == [topics.cmd("a")]
    cmd = codec.decode_cmd(out[0][1])
    assert cmd["cmd"] == "rebirth"
    assert security.CmdGuard({"k1": KEY}).check(cmd, 30) == ""


def test_death_removes_gateway_and_registry_records_it(tmp_path):
    reg = SqliteRegistry(tmp_path / "r.db")
    c = core(registry=reg)
    c.handle(*birth("a", bd=3), 0)
    c.handle(*birth("b"), 0)
    c.handle(*state("a", 1, P_W, bd=3), 10)
    c.handle(*state("b", 1, P_W), 10)
    c.handle(topics.death("a"), codec.encode_death("a", 3, 50), 50)
    assert c.control_round(2000) and c.records[-1].n_live == 1
    assert [(g.gateway_id, g.online) for g in reg.gateways()] == [("a", False), ("b", True)]
    reg.close()


def test_restart_continues_round_ids_and_sessions_from_registry(tmp_path):
    path = tmp_path / "r.db"
    reg = SqliteRegistry(path)
    c = core(registry=reg)
    c.handle(*birth("a"), 0)
    c.handle(*state("a", 1, P_W), 10)
    for t in (2000, 4000, 6000):
        c.handle(*state("a", t // 2000 + 1, P_W), t - 5)
        c.control_round(t)
    last = c.round_id
    reg.close()
    reg2 = SqliteRegistry(path)
    c2 = core(registry=reg2)
    assert c2.aggregator.groups() == ["g1"]              # known before any new birth
    assert c2.handle(*state("a", 77, P_W), 8000) == []   # any seq resynchronises, no rebirth
    out = c2.control_round(8000)
    assert codec.decode_vector(out[0][1])["round_id"] == last + 1
    guard = security.VectorGuard({"k1": KEY}, "g1")
    guard.last_round_id = last                            # a gateway that saw the old controller
    assert guard.check(codec.decode_vector(out[0][1]), 8100) == ""
    reg2.close()


@pytest.mark.parametrize("with_db", [True, False])
def test_restart_reading_retained_births_first_requests_no_rebirth(tmp_path, with_db):
    """Issue 16.1: a restarted controller reads the gateways' retained births (seq 0) before their
    next live report (seq 69 of the same session): nothing was lost, so no rebirth is asked."""
    path = tmp_path / "r.db"
    reg = SqliteRegistry(path) if with_db else None
    c = core(registry=reg)
    c.handle(*birth("a"), 0)
    for seq in range(1, 69):
        c.handle(*state("a", seq, P_W), seq * 10)
    if reg is not None:
        reg.close()
    reg2 = SqliteRegistry(path) if with_db else None
    c2 = core(registry=reg2)
    assert c2.handle(*birth("a"), 1000, retained=True) == []     # delivered on subscribe
    assert c2.handle(*state("a", 69, P_W), 1010) == []           # same session: no gap
    assert c2.handle(*state("a", 70, P_W), 1020) == []
    assert c2.aggregator.counters["gaps"] == 0
    out = c2.handle(*state("a", 75, P_W), 1030)                  # a real gap is still one
    assert [o[0] for o in out] == [topics.cmd("a")]
    # a live birth (a rebirth, or a reconnect seen live) restarts the sequence at 0 as before
    assert c2.handle(*birth("a"), 20_000) == []
    assert c2.handle(*state("a", 1, P_W), 20_010) == []
    assert c2.aggregator.counters["gaps"] == 1
    if reg2 is not None:
        reg2.close()


def test_retained_birth_of_a_new_session_resynchronises_on_its_first_report():
    c = core()
    c.handle(*birth("a", bd=4), 0, retained=True)
    assert c.handle(*state("a", 33, P_W, bd=4), 10) == []
    assert c.handle(*state("a", 34, P_W, bd=4), 20) == []
    assert c.handle(*state("a", 40, P_W, bd=5), 30) != []        # another session: a gap



def test_broker_restart_queued_birth_then_a_jump_in_seq_requests_no_rebirth():
    """bench.faults broker_kill: the gateways came back before the controller; each one's live
    birth (new bd_seq, seq 0) waited in the controller's persistent session (QoS 1) while its
    QoS-0 states 1..6 were dropped, so the controller saw birth (not retained) then seq 7 and
    asked all 10 gateways for a rebirth ("session gap (seq 7 after 0)"). Nothing was lost that a
    rebirth brings back: the controller's reconnect re-synchronises every session."""
    c = core()
    c.handle(*birth("a", bd=1), 0)
    for seq in range(1, 20):
        c.handle(*state("a", seq, P_W, bd=1), seq * 500)
    c.on_connect(30_000)                                          # the broker is back
    assert c.handle(*birth("a", bd=2), 30_050) == []              # queued, delivered live
    assert c.handle(*birth("a", bd=2), 30_060, retained=True) == []   # and again on subscribe
    assert c.handle(*state("a", 7, P_W, bd=2), 30_100) == []
    assert c.handle(*state("a", 8, P_W, bd=2), 30_600) == []
    assert c.control_round(31_000) and all(o[0] != topics.cmd("a") for o in c.control_round(32_000))
    assert c.aggregator.counters["rebirth_requests"] == 0
    # after the grace a real gap in the same session is one again
    out = c.handle(*state("a", 12, P_W, bd=2), 40_000)
    assert [o[0] for o in out] == [topics.cmd("a")]


def test_restart_without_db_state_before_the_retained_birth_requests_no_rebirth():
    """bench.faults controller_kill_nodb: the new process's persistent session (same client id)
    still had the old subscription, so a live state arrived before the retained birth the
    subscription delivers ("state before any birth" -> rebirth). Within the grace after the
    connect the request waits, and the retained birth cancels it."""
    c = core()
    c.on_connect(10_000)
    assert c.handle(*state("a", 40, P_W, bd=3), 10_010) == []     # no birth yet: nothing sent
    assert c.handle(*birth("a", bd=3), 10_020, retained=True) == []
    assert c.handle(*state("a", 41, P_W, bd=3), 10_500) == []
    for t in range(11_000, 20_001, 1000):
        assert all(o[0] != topics.cmd("a") for o in c.control_round(t))
    assert c.aggregator.counters["rebirth_requests"] == 0 and c.aggregator.groups() == ["g1"]


def test_a_gateway_without_any_birth_is_still_asked_for_one_after_the_grace():
    c = core()
    c.on_connect(10_000)
    assert c.handle(*state("b", 5, P_W), 10_010) == []
    assert all(o[0] != topics.cmd("b") for o in c.control_round(11_000))
    out = c.control_round(10_000 + c.resync_grace_ms)              # no birth came: ask for one
    assert [o[0] for o in out if o[0] == topics.cmd("b")] == [topics.cmd("b")]
    assert codec.decode_cmd(out[0][1])["cmd"] == "rebirth"
    assert c.aggregator.counters["rebirth_requests"] == 1

FULL_W = [[2000, 0, 0, 0], [2000, 0, 0, 0], [1000, 0, 0, 0]]   # everything enabled: 5 kW


def net_off_kw(c, payload, state_w):
    v = codec.decode_vector(payload)
    ef = np.array(state_w)[:, 0] / 1000.0
    return float(np.dot(v["p_off"], ef))


def test_gateways_back_from_fail_safe_are_ramped_to_the_goal_not_stepped():
    """Issue 16.2: after a fail-safe period every device is enabled; the first controlled round
    must not shed the whole gap (it sent p_off = 1 to a tier: 22 % of demand in one round)."""
    c = core(goal=ConstantGoal(2.5))
    c.handle(*birth("a", tier_w=(2000, 2000, 1000), n=1), 0)
    c.handle(*state("a", 1, [[0, 0, 2000, 0], [500, 0, 1500, 0], [1000, 0, 0, 0]]), 10)
    c.control_round(2000)                       # at the goal (1.5 kW enabled ≈ 2.5 - ...): tracking
    c.handle(*state("a", 2, [[0, 0, 2000, 0], [1500, 0, 500, 0], [1000, 0, 0, 0]]), 2010)
    c.control_round(4000)
    c.handle(*state("a", 3, [[0, 0, 2000, 0], [1500, 0, 500, 0], [1000, 0, 0, 0]]), 4010)
    c.control_round(6000)                       # two calm fresh rounds end the recovery
    assert not c._rounds["g1"].recovering
    c.handle(*state("a", 4, FULL_W, fail_safe=True), 30_000)   # controller silent, then back
    out = c.control_round(32_000)
    assert net_off_kw(c, out[0][1], FULL_W) <= 0.03 * 5.0 + 1e-6
    assert c.records[-1].ramped and c.records[-1].n_fail_safe == 1


def test_a_control_gap_restarts_the_ramp():
    c = core(goal=ConstantGoal(2.5))
    c.handle(*birth("a", tier_w=(2000, 2000, 1000), n=1), 0)
    c.handle(*state("a", 1, [[0, 0, 2000, 0], [1500, 0, 500, 0], [1000, 0, 0, 0]]), 10)
    c.control_round(2000)
    c.handle(*state("a", 2, [[0, 0, 2000, 0], [1500, 0, 500, 0], [1000, 0, 0, 0]]), 2010)
    c.control_round(4000)
    assert not c._rounds["g1"].recovering
    c.handle(*state("a", 3, FULL_W), 60_000)   # no round ran for 58 s (broker away)
    out = c.control_round(62_000)
    assert net_off_kw(c, out[0][1], FULL_W) <= 0.03 * 5.0 + 1e-6


def test_restart_without_registry_round_ids_stay_above_the_previous_run():
    """Issue 16.3: without --db the round ids restarted at 1 and every gateway rejected the new
    vectors as replays for as long as the previous run had lasted."""
    t0 = 1_700_000_000_000
    guard = security.VectorGuard({"k1": KEY}, "g1")
    c = core()
    c.handle(*birth("a"), t0)
    for i in range(1, 21):
        c.handle(*state("a", i, P_W), t0 + 2000 * i - 5)
        out = c.control_round(t0 + 2000 * i)
        assert guard.check(codec.decode_vector(out[0][1]), t0 + 2000 * i + 10) == ""
    c2 = core()                                               # no registry, nothing remembered
    c2.handle(*birth("a"), t0 + 44_000, retained=True)
    c2.handle(*state("a", 22, P_W), t0 + 44_000)
    out = c2.control_round(t0 + 46_000)
    msg = codec.decode_vector(out[0][1])
    assert msg["round_id"] == (t0 + 46_000) // c2.round_ms   # as docs/mqtt.md says
    assert guard.check(msg, t0 + 46_010) == ""
    again = c2.control_round(t0 + 46_000)                     # same boundary twice: still increasing
    assert codec.decode_vector(again[0][1])["round_id"] == msg["round_id"] + 1


def test_vectors_rejected_by_gateways_are_logged_and_counted(caplog):
    c = core()
    c.handle(*birth("a"), 0)
    c.handle(*birth("b"), 0)

    def rep(gid, seq, n, why):
        return topics.state(gid), codec.encode_state(gid, "g1", 0, seq, 0, seq, P_W, [[1, 0, 0, 0]] * 3, -1,
                                                     False, 0, vec_rejected=n, vec_reject_reason=why)
    c.handle(*rep("a", 1, 4, "replay (round_id 3 <= last accepted 40)"), 10)   # baseline: before us
    c.handle(*rep("b", 1, 0, ""), 10)
    assert c.vectors_rejected_by_gateways == {}
    with caplog.at_level("WARNING"):
        c.handle(*rep("a", 2, 7, "replay (round_id 5 <= last accepted 40)"), 2010)
        c.handle(*rep("b", 2, 1, "expired (expires_ts_ms 1 <= now 2)"), 2010)
    assert c.vectors_rejected_by_gateways == {"replay": 3, "expired": 1}
    assert any("gateway a rejected 3 vector(s)" in r.message and "replay" in r.message
               for r in caplog.records)
    c.handle(*rep("a", 3, 7, "replay (round_id 5 <= last accepted 40)"), 4010)   # nothing new
    c.handle(*rep("a", 4, 2, "bad signature"), 6010)          # counter restarted with the agent
    assert c.vectors_rejected_by_gateways == {"replay": 3, "expired": 1, "bad signature": 2}


def test_fraction_of_demand_goal_scales_with_fleet():
    class Half(GoalSchedule):
        def goal_kw(self, group, t_ms, demand_kw=None):
            return 0.5
    c = core(goal=FractionOfDemand(Half()))
    c.handle(*birth("a"), 0)
    c.handle(*state("a", 1, P_W), 0)
    c.control_round(2000)
    assert c.records[-1].goal_kw == pytest.approx(0.5 * 5.0)


def test_no_reports_no_vector():
    c = core(groups=["g9"])
    assert c.control_round(2000) == []


def test_a_failing_group_does_not_stop_the_others():
    class Picky(GoalSchedule):
        def goal_kw(self, group, t_ms, demand_kw=None):
            if group == "bad":
                raise ValueError("goal: no schedule for group bad")
            return 3.0
    c = core(goal=Picky())
    c.handle(*birth("a", group="bad"), 0)
    c.handle(*birth("b", group="good"), 0)
    c.handle(*state("a", 1, P_W, group="bad"), 10)
    c.handle(*state("b", 1, P_W, group="good"), 10)
    out = c.control_round(2000)
    assert [t for t, *_ in out] == [topics.vector("good")]
    assert c.round_errors == 1


def test_request_response_pairs_by_txn_and_rejects_strays():
    c = core()
    txn, (topic, payload, qos, _) = c.request("gw7", "config_get", 100)
    assert topic == topics.cmd("gw7") and qos == 1
    cmd = codec.decode_cmd(payload)
    assert cmd["txn"] == txn and security.CmdGuard({"k1": KEY}).check(cmd, 200) == ""
    resp = codec.encode_resp("gw7", 0, 3, 300, txn, True, "", {"fail_safe_ms": 60000})
    c.handle(topics.resp("gw7"), resp, 300)
    assert c.responses[txn]["params"] == {"fail_safe_ms": 60000} and c.pending_txns == {}
    c.handle(topics.resp("gw7"), resp, 400)                     # a second answer: nothing pending
    stray = codec.encode_resp("gw8", 0, 3, 300, "nobody-asked", True, "", {})
    c.handle(topics.resp("gw8"), stray, 400)
    assert sum(v for k, v in c.rejected.items() if k.startswith("resp: txn")) == 2


def test_estimator_models_the_refractory_timing_the_births_announce(tmp_path):
    from cloud.estimator import RefractoryParams
    slow = {"round_ms": 2000, "t_ef_ms": 300_000, "t_ev_ms": 0, "t_df_ms": 240_000, "t_dv_ms": 30_000}
    c = core()
    c.handle(*birth("a", params=slow), 0)
    c.handle(*birth("b", params=slow), 0)
    c.handle(*birth("z", group="g2"), 0)                       # announces no timing: defaults
    assert c.group_refractory("g1") == RefractoryParams(300.0, 0.0, 240.0, 30.0)
    assert c.group_refractory("g2") == RefractoryParams()
    c.handle(*state("a", 1, P_W), 0)
    # the kernel of the group's estimator is the announced one: an ER slice switched now is
    # refractory for exactly 300 s = 150 rounds (T_EV = 0)
    est = c.estimators["g1"]
    assert est.kernel_er.argmax() == 150 and est.kernel_er.max() == 1.0
    # a controller restarted on the same registry models the same timing before any new birth
    reg = SqliteRegistry(str(tmp_path / "r.sqlite"))
    c1 = core(registry=reg)
    c1.handle(*birth("a", params=slow), 0)
    reg.close()
    c2 = core(registry=SqliteRegistry(str(tmp_path / "r.sqlite")))
    assert c2.group_refractory("g1") == RefractoryParams(300.0, 0.0, 240.0, 30.0)
    # an explicit override wins over the births
    assert core(refractory=RefractoryParams(10.0, 1.0, 10.0, 1.0)).group_refractory("g1").t_ef_s == 10.0


def test_a_group_named_by_its_location_id_is_controlled_on_its_own_topic():
    from vocab.location import parse_location
    c = core()
    for gid, loc in (("a", "671.1"), ("b", "671.2")):
        c.handle(*birth(gid, group=loc), 0)
        c.handle(*state(gid, 1, P_W, group=loc), 0)
    out = c.control_round(2000)
    assert sorted(t for t, *_ in out) == [topics.vector("671.1"), topics.vector("671.2")]
    assert sorted(parse_location(r.group) for r in c.records) == [("671", 1), ("671", 2)]



def test_a_restarted_gateway_process_reusing_its_bd_seq_is_live_again():
    """bench.faults agent_kill: a gateway process killed (its Will: death bd_seq 0) and started
    again counts bd_seq from 0 once more; its live birth was taken for the dead session and the
    gateway stayed out of control (each state a gap, each rebirth dead again)."""
    c = core()
    c.handle(*birth("a", bd=0), 0)
    c.handle(*state("a", 1, P_W, bd=0), 500)
    c.handle(topics.death("a"), codec.encode_death("a", 0, 0), 1000)           # SIGKILL: the Will
    assert c.aggregator.groups() == []
    assert c.handle(*birth("a", bd=0), 5000) == []                               # the new process
    assert c.handle(*state("a", 1, P_W, bd=0), 5500) == []
    assert c.aggregator.groups() == ["g1"] and c.aggregator.sessions["a"].online
    assert c.control_round(6000) and c.records[-1].n_live == 1
    assert c.aggregator.counters["rebirth_requests"] == 0
    # read back retained on a controller start, the same pair still means "dead"
    c2 = core()
    c2.handle(topics.death("b"), codec.encode_death("b", 4, 0), 10, retained=True)
    c2.handle(*birth("b", bd=4), 20, retained=True)
    assert c2.aggregator.groups() == []



def test_a_gateway_death_is_taken_up_by_the_others_at_the_ramp():
    """bench.faults agent_kill: one of two gateways died, and the survivor was asked at once to
    take up its share of the group's goal (a one-round step of the dead gateway's share)."""
    c = core(goal=ConstantGoal(5.0))
    c.handle(*birth("a", tier_w=(2000, 2000, 1000), n=1), 0)
    c.handle(*birth("b", tier_w=(2000, 2000, 1000), n=1), 0)
    for i, t in enumerate((2000, 4000, 6000, 8000)):
        c.handle(*state("a", i + 1, [[500, 0, 1500, 0], [2000, 0, 0, 0], [0, 0, 0, 0]]), t - 10)
        c.handle(*state("b", i + 1, [[500, 0, 1500, 0], [2000, 0, 0, 0], [0, 0, 0, 0]]), t - 10)
        c.control_round(t)
    assert not c._rounds["g1"].recovering
    c.handle(topics.death("b"), codec.encode_death("b", 0, 8500), 8500)
    c.handle(*state("a", 5, [[500, 0, 1500, 0], [2000, 0, 0, 0], [0, 0, 0, 0]]), 9990)
    out = c.control_round(10_000)
    v = codec.decode_vector(out[0][1])
    on_kw = v["p_on"][0] * 1.5                        # a's green DF is 1.5 kW; goal 5 needs 2.5 more
    assert c.records[-1].ramped and on_kw <= 0.03 * 5.0 + 1e-6
