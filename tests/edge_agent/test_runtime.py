"""Gateway agent scenarios on the in-memory broker: session, control, safety, store-and-forward."""
import json

import pytest

from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.states import EF, ER, DF, DR
from edge_agent.transport import FakeBroker, FakeTransport

KEY = b"k" * 32
KEYS = {"k1": KEY}
T0 = 1_700_000_000_000
GW = "gw-1"
GROUP = "bus1.a"


def make_agent(broker=None, n_devices=10, store_capacity=256, fail_safe_s=60, logs=None):
    broker = broker or FakeBroker()
    devices = [ConstantDevice("d%02d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(n_devices)]
    core = GatewayCore(GW, devices, AgentParams(fail_safe_s=fail_safe_s), seed=7)
    log = (lambda level, msg: logs.append((level, msg))) if logs is not None else (lambda *a: None)
    agent = GatewayAgent(core, FakeTransport(broker, "colorgrid-gw-" + GW), GW, GROUP, KEYS,
                         Prng(3), store_capacity=store_capacity, log=log)
    return broker, agent


def published(broker, topic):
    return [codec.decode(topic, p)[2] for (_c, t, p, _q, _r) in broker.log if t == topic]


def send_vector(broker, round_id, p_on, p_off, now_ms, ttl_ms=10_000, key=KEY):
    broker.route("ctl", topics.vector(GROUP),
                 security.make_vector(GROUP, round_id, p_on, p_off, now_ms, ttl_ms, "k1", key),
                 1, False)


def test_connect_publishes_retained_birth_then_one_report_per_round():
    broker, agent = make_agent()
    for r in range(3):
        agent.tick(T0 + 2000 * r)
    birth = codec.decode_birth(broker.retained[topics.birth(GW)][0])
    assert birth["bd_seq"] == 0 and birth["seq"] == 0 and birth["group"] == GROUP
    assert birth["tiers"] == ["green", "yellow", "black"]
    assert birth["devices"][0] == {"device_id": "d00", "kind": "constant", "tier_w": [500, 300, 200]}
    assert birth["params"]["fail_safe_ms"] == 60_000 and birth["params"]["round_ms"] == 2000
    states = published(broker, topics.state(GW))
    assert [s["seq"] for s in states] == [1, 2, 3]
    assert [s["ts_ms"] for s in states] == [T0, T0 + 2000, T0 + 4000]
    assert states[0]["p_w"] == [[5000, 0, 0, 0], [3000, 0, 0, 0], [2000, 0, 0, 0]]
    assert states[0]["count"][0] == [10, 0, 0, 0]
    assert states[0]["fail_safe"] is True  # no vector yet
    subs = broker.sessions["colorgrid-gw-" + GW]["subs"]
    assert sorted(subs) == sorted(topics.gateway_subscriptions(GW, GROUP))


def test_signed_vector_applied_once_black_never_shed():
    broker, agent = make_agent()
    agent.tick(T0)
    send_vector(broker, 1, [0, 0, 0], [1, 1, 1], T0 + 100)
    agent.tick(T0 + 2000)
    last = published(broker, topics.state(GW))[-1]
    # every green and yellow slice switched off (p_off = 1); black kept on whatever the vector says
    assert last["p_w"] == [[0, 0, 0, 5000], [0, 0, 0, 3000], [2000, 0, 0, 0]]
    assert last["vector_round_id"] == 1 and last["fail_safe"] is False
    assert agent.metrics["vectors_applied"] == 1
    agent.tick(T0 + 4000)  # no new vector: hold, nothing switches
    assert published(broker, topics.state(GW))[-1]["p_w"] == last["p_w"]


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: send_vector(b, 5, [0, 0, 0], [1, 1, 1], T0, key=b"x" * 32), "bad signature"),
    (lambda b: send_vector(b, 5, [0, 0, 0], [1, 1, 1], T0 - 20_000), "expired"),
    (lambda b: send_vector(b, 1, [0, 0, 0], [1, 1, 1], T0), "replay"),
    (lambda b: b.route("x", topics.vector(GROUP), b'{"v":1,"p_on":', 1, False), "payload: not JSON"),
    (lambda b: b.route("x", topics.vector(GROUP), json.dumps(dict(
        json.loads(security.make_vector(GROUP, 9, [0, 0], [1, 1], T0, 1000, "k1", KEY)))).encode(),
        1, False), "p_on: 2 tiers, this gateway has 3"),
])
def test_forged_expired_replayed_malformed_vectors_rejected_with_reason(mutate, reason):
    logs = []
    broker, agent = make_agent(logs=logs)
    agent.tick(T0)
    send_vector(broker, 1, [0, 0, 0], [0, 0, 0], T0)
    agent.tick(T0 + 1)  # accepts round 1
    before = agent.metrics["vectors_accepted"]
    mutate(broker)
    agent.tick(T0 + 2000)
    assert agent.metrics["vectors_accepted"] == before
    assert agent.rejections[-1][1].startswith(reason), agent.rejections
    assert any(level == "warning" and reason in msg for level, msg in logs)
    assert published(broker, topics.state(GW))[-1]["p_w"][0] == [5000, 0, 0, 0]


def test_fail_safe_after_silence_and_immediately_when_controller_offline():
    broker, agent = make_agent(fail_safe_s=10)
    agent.tick(T0)
    send_vector(broker, 1, [0, 0, 0], [1, 0, 0], T0)
    agent.tick(T0 + 2000)
    assert published(broker, topics.state(GW))[-1]["fail_safe"] is False
    for t in range(4000, 12_001, 2000):
        agent.tick(T0 + t)
    flags = [s["fail_safe"] for s in published(broker, topics.state(GW))]
    assert flags[-1] is True and flags[-2] is False  # silent for 10 s since T0 + 2000
    send_vector(broker, 2, [0, 0, 0], [0, 0, 0], T0 + 12_500)
    agent.tick(T0 + 14_000)
    assert published(broker, topics.state(GW))[-1]["fail_safe"] is False
    broker.route("ctl", topics.controller_status(), security.make_status("ctl", False, T0, T0, "k1", KEY), 1, True)
    agent.tick(T0 + 16_000)
    assert published(broker, topics.state(GW))[-1]["fail_safe"] is True


def test_will_death_matches_birth_session_when_socket_dies():
    broker, agent = make_agent()
    agent.tick(T0)
    broker.kill_client("colorgrid-gw-" + GW)
    death = codec.decode_death(broker.retained[topics.death(GW)][0])
    assert death == {"v": 1, "gateway_id": GW, "bd_seq": 0, "ts_ms": T0, "reason": "lost"}


def test_broker_outage_stores_reports_then_rebirths_and_flushes_in_order():
    broker, agent = make_agent(store_capacity=3)
    agent.tick(T0)
    broker.stop()
    for r in range(1, 6):
        agent.tick(T0 + 2000 * r)
    assert agent.store.depth == 3 and agent.store.dropped == 2
    broker.start()
    t = T0 + 12_000
    while not agent.connected:
        t += 100
        agent.tick(t)
        assert t < T0 + 60_000
    birth = codec.decode_birth(broker.retained[topics.birth(GW)][0])
    assert birth["bd_seq"] == 1
    states = published(broker, topics.state(GW))
    flushed = states[1:]  # rounds 1, 2 were dropped; 3..5 flushed; 6 is the live round
    assert [s["round"] for s in flushed] == [3, 4, 5, 6]
    assert [s["seq"] for s in flushed] == [1, 2, 3, 4] and [s["bd_seq"] for s in flushed] == [1] * 4
    assert [s["store_depth"] for s in flushed] == [2, 1, 0, 0]
    assert agent.metrics["connection_losses"] >= 1 and agent.metrics["connects"] == 2


def test_qos1_vector_queued_in_persistent_session_is_applied_after_reconnect():
    broker, agent = make_agent()
    agent.tick(T0)
    broker.kill_client("colorgrid-gw-" + GW)  # the gateway's socket dies; broker keeps session
    send_vector(broker, 4, [0, 0, 0], [1, 0, 0], T0 + 500)
    agent.connected = False  # the agent notices on its next poll in real transports
    agent.tick(T0 + 2000)
    assert agent.metrics["vectors_accepted"] == 1
    agent.tick(T0 + 4000)
    assert published(broker, topics.state(GW))[-1]["vector_round_id"] == 4


def _cmd(broker, txn, cmd, now_ms, params=None, key=KEY):
    broker.route("ctl", topics.cmd(GW), security.make_cmd(txn, cmd, now_ms, 5000, "k1", key, params),
                 1, False)


def test_commands_rebirth_config_get_set_with_transaction_ids():
    broker, agent = make_agent()
    agent.tick(T0)
    _cmd(broker, "t1", "rebirth", T0)
    _cmd(broker, "t2", "config_set", T0, {"fail_safe_ms": 30_000})
    _cmd(broker, "t3", "config_set", T0, {"fail_safe_ms": 5})
    _cmd(broker, "t4", "config_set", T0, {"t_ef_ms": 5})
    _cmd(broker, "t5", "config_get", T0, key=b"z" * 32)  # forged: no answer
    _cmd(broker, "t1", "rebirth", T0)  # replayed txn: no answer
    agent.tick(T0 + 10)
    resps = {r["txn"]: r for r in published(broker, topics.resp(GW))}
    assert sorted(resps) == ["t1", "t2", "t3", "t4"]
    assert resps["t2"]["ok"] and resps["t2"]["params"]["fail_safe_ms"] == 30_000
    assert resps["t3"]["error"].startswith("fail_safe_ms: out of range")
    assert resps["t4"]["error"].startswith("t_ef_ms: not settable")
    assert agent.fail_safe_ms == 30_000
    births = published(broker, topics.birth(GW))
    assert len(births) == 3 and births[-1]["params"]["fail_safe_ms"] == 30_000
    assert [r[1][:6] for r in agent.rejections] == ["bad si", "replay"]
    # seq: birth resets to 0, resp follows it (t2: birth seq 0, resp seq 1)
    assert resps["t2"]["seq"] == 1


def test_seq_wraps_at_256_and_shutdown_death_carries_seq():
    broker, agent = make_agent(n_devices=1)
    for r in range(300):
        agent.tick(T0 + 2000 * r)
    seqs = [s["seq"] for s in published(broker, topics.state(GW))]
    assert seqs[254:258] == [255, 0, 1, 2]
    agent.shutdown(T0 + 700_000)
    death = codec.decode_death(broker.retained[topics.death(GW)][0])
    assert death["reason"] == "shutdown" and death["seq"] == (seqs[-1] + 1) % 256
    assert not broker.online


def test_garbage_on_every_subscribed_topic_never_crashes():
    broker, agent = make_agent()
    agent.tick(T0)
    for topic in topics.gateway_subscriptions(GW, GROUP):
        for payload in (b"", b"\x00\xff", b"null", b"{}", b'{"v":1}', b"[" * 10000, b"1e999"):
            broker.route("x", topic, payload, 1, False)
    agent.tick(T0 + 2000)
    assert agent.metrics["rejected"] == 21 and agent.connected
    assert len(published(broker, topics.state(GW))) == 2


def test_message_on_a_topic_the_gateway_does_not_read_is_rejected_and_counted_apart():
    # a broker that delivers what was not subscribed (seen with amqtt under load): another
    # gateway's retained birth reaches this gateway's session
    broker, agent = make_agent()
    agent.tick(T0)
    other = codec.encode_birth("gw-2", GROUP, 0, T0, ["green", "yellow", "black"], [], {})
    agent.handle(topics.birth("gw-2"), other, T0 + 10)
    assert agent.metrics["rejected"] == 1 and agent.metrics["rejected_foreign_topic"] == 1
    assert agent.rejections[-1] == (topics.birth("gw-2"), "topic: not one this gateway reads")
    # a rejected vector is not counted as foreign
    agent.handle(topics.vector(GROUP), b"{}", T0 + 20)
    assert agent.metrics["rejected"] == 2 and agent.metrics["rejected_foreign_topic"] == 1


def test_status_must_be_signed_and_of_the_current_controller_session():
    broker, agent = make_agent()
    agent.tick(T0)
    send_vector(broker, 1, [0, 0, 0], [0, 0, 0], T0 + 10)
    agent.tick(T0 + 2000)
    assert agent.fail_safe is False
    status = topics.controller_status()
    # forged (wrong key), unknown key id, unsigned: rejected, the gateway stays under control
    broker.route("x", status, security.make_status("ctl", False, T0 + 2100, T0, "k1", b"x" * 32), 1, True)
    broker.route("x", status, security.make_status("ctl", False, T0 + 2100, T0, "k9", KEY), 1, True)
    unsigned = json.loads(security.make_status("ctl", False, T0 + 2100, T0, "k1", KEY))
    del unsigned["sig"]
    broker.route("x", status, json.dumps(unsigned).encode(), 1, True)
    send_vector(broker, 2, [0, 0, 0], [0, 0, 0], T0 + 2200)
    agent.tick(T0 + 4000)
    assert agent.fail_safe is False and agent.controller_online is not False
    reasons = [r for _, r in agent.rejections]
    assert reasons[-3:] == ["status: bad signature", "status: unknown key_id 'k9'", "sig: missing"]
    # the current session (T0 + 3000) online; a replayed Will of the previous session is ignored
    broker.route("ctl", status, security.make_status("ctl", True, T0 + 4100, T0 + 3000, "k1", KEY), 1, True)
    broker.route("x", status, security.make_status("ctl", False, T0 + 100, T0, "k1", KEY), 1, True)
    send_vector(broker, 3, [0, 0, 0], [0, 0, 0], T0 + 4200)
    agent.tick(T0 + 6000)
    assert agent.controller_online is True and agent.fail_safe is False
    assert agent.rejections[-1][1] == "status: older session (%d < %d)" % (T0, T0 + 3000)
    # the real Will of the current session: fail-safe at the next round
    broker.route("ctl", status, security.make_status("ctl", False, T0 + 3000, T0 + 3000, "k1", KEY), 1, True)
    agent.tick(T0 + 8000)
    assert agent.controller_online is False and agent.fail_safe is True


def test_state_reports_tell_the_controller_how_many_vectors_were_rejected_and_why():
    """Issue 16.3: gateways rejecting every vector as a replay left no trace at the controller."""
    broker, agent = make_agent()
    agent.tick(T0)
    assert published(broker, topics.state(GW))[-1]["vec_rejected"] == 0
    send_vector(broker, 7, [0, 0, 0], [0, 0, 0], T0 + 10)
    agent.tick(T0 + 20)
    send_vector(broker, 3, [0, 0, 0], [1, 1, 1], T0 + 30)          # older round id: replay
    send_vector(broker, 9, [0, 0, 0], [1, 1, 1], T0 + 40, key=b"x" * 32)   # forged
    agent.tick(T0 + 2000)
    last = published(broker, topics.state(GW))[-1]
    assert last["vec_rejected"] == 2
    assert last["vec_reject_reason"].startswith("bad signature")
    broker.route("x", topics.controller_status(), b"garbage", 1, False)   # not a vector: not counted
    agent.tick(T0 + 4000)
    assert published(broker, topics.state(GW))[-1]["vec_rejected"] == 2


def test_with_its_own_key_every_gateway_message_is_signed():
    """Issue 16.4: reports signed per gateway (HMAC with the gateway's own key), the Last Will too."""
    gw_key = b"g" * 32
    broker = FakeBroker()
    devices = [ConstantDevice("d%02d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(4)]
    core = GatewayCore(GW, devices, AgentParams(), seed=7)
    agent = GatewayAgent(core, FakeTransport(broker, "colorgrid-gw-" + GW), GW, GROUP, KEYS, Prng(3),
                         log=lambda *a: None, report_key=gw_key)
    agent.tick(T0)
    agent.tick(T0 + 2000)
    broker.route("ctl", topics.cmd(GW), security.make_cmd("t1", "config_get", T0 + 2100, 10_000, "k1", KEY), 1, False)
    agent.tick(T0 + 4000)
    will = agent.transport.will
    agent.shutdown(T0 + 5000)
    payloads = [(t, p) for (_c, t, p, _q, _r) in broker.log if t.startswith("colorgrid/v1/gw/")]
    kinds = sorted({t.rsplit("/", 1)[1] for t, _ in payloads})
    assert kinds == ["birth", "death", "resp", "state"]
    for topic, payload in payloads + [(will[0], will[1])]:
        _, _, msg = codec.decode(topic, payload)
        assert msg["key_id"] == GW and security.verify(msg, {GW: gw_key}) == "", topic
        assert security.verify(msg, {GW: b"x" * 32}) == "bad signature"


def test_a_restarted_agent_refuses_a_captured_vector_issued_before_it_started():
    """Issue 16 (replay memory across a gateway restart): the last accepted round id lives in RAM,
    so a vector captured before a restart and replayed within its lifetime was applied once more.
    The agent now refuses anything issued before it started."""
    broker, agent = make_agent()
    agent.tick(T0)
    captured = security.make_vector(GROUP, 50, [0, 0, 0], [1, 1, 1], T0 + 100, 30_000, "k1", KEY)
    broker.route("ctl", topics.vector(GROUP), captured, 1, False)
    agent.tick(T0 + 200)
    assert agent.guard.last_round_id == 50                      # the first process applied it
    broker2, restarted = make_agent()                           # a new process, RAM empty
    restarted.tick(T0 + 5000)
    broker2.route("x", topics.vector(GROUP), captured, 1, False)   # replayed, not expired yet
    restarted.tick(T0 + 5100)
    assert restarted.pending is None and restarted.guard.last_round_id == -1
    assert restarted.rejections[-1][1].startswith("issued before this agent started")
    send_vector(broker2, 51, [0, 0, 0], [0, 0, 0], T0 + 5200)  # the controller's next one is taken
    restarted.tick(T0 + 5300)
    assert restarted.guard.last_round_id == 51
