"""The gateway agent (paho transport) against a real mosquitto child: session, signed control,
rejections, Last Will, broker restart with persistent session."""
import socket
import time

import pytest

from edge_agent import codec, security, topics
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import KEY, Observer, make_agent, pump

pytestmark = pytest.mark.broker
GW, GROUP = "gw-1", "bus1.a"
T0 = 1_700_000_000_000


def vector(round_id, p_off, issued, ttl=10_000, key=KEY):
    return security.make_vector(GROUP, round_id, [0, 0, 0], p_off, issued, ttl, "k1", key)


def test_birth_reports_signed_vector_and_rejections(mosquitto):
    broker = mosquitto()
    obs = Observer(broker)
    logs = []
    agent = make_agent(broker, logs=logs)
    agent.tick(T0)
    for r in (1, 2):
        agent.tick(T0 + 2000 * r)
    births = obs.wait_topic(topics.birth(GW))
    assert codec.decode_birth(births[0].payload)["bd_seq"] == 0
    states = [codec.decode_state(m.payload) for m in obs.wait_topic(topics.state(GW), 3)]
    assert [s["seq"] for s in states] == [1, 2, 3]
    late = Observer(broker, subscribe=(topics.ALL_BIRTHS,))  # retained birth for late joiners
    assert late.wait_topic(topics.birth(GW))[0].retain
    late.close()

    obs.publish(topics.vector(GROUP), vector(1, [1, 0, 0], T0 + 5000))
    pump(agent, T0 + 5000, lambda: agent.metrics["vectors_accepted"] == 1, what="vector")
    agent.tick(T0 + 6000)
    last = codec.decode_state(obs.wait_topic(topics.state(GW), 4)[-1].payload)
    assert last["vector_round_id"] == 1 and last["p_w"][0] == [0, 0, 0, 5000]

    obs.publish(topics.vector(GROUP), vector(2, [0, 1, 0], T0 + 6000, key=b"f" * 32))  # forged
    obs.publish(topics.vector(GROUP), vector(3, [0, 1, 0], T0 - 60_000))  # expired
    obs.publish(topics.vector(GROUP), vector(1, [0, 1, 0], T0 + 6000))  # replayed round id
    obs.publish(topics.vector(GROUP), b"\x00garbage")
    pump(agent, T0 + 6500, lambda: agent.metrics["rejected"] == 4, what="4 rejections")
    reasons = [r for _t, r in agent.rejections]
    assert reasons[0] == "bad signature" and reasons[1].startswith("expired")
    assert reasons[2].startswith("replay") and reasons[3].startswith("payload: not JSON")
    assert sum("rejected" in m for _lvl, m in logs) == 4
    agent.tick(T0 + 8000)
    last = codec.decode_state(obs.wait_topic(topics.state(GW), 5)[-1].payload)
    assert last["p_w"][1] == [3000, 0, 0, 0]  # yellow untouched: nothing forged was applied
    agent.shutdown(T0 + 9000)
    death = codec.decode_death(obs.wait_topic(topics.death(GW))[0].payload)
    assert death["reason"] == "shutdown"
    obs.close()


def test_last_will_death_when_the_agent_socket_dies(mosquitto):
    broker = mosquitto()
    obs = Observer(broker)
    agent = make_agent(broker)
    agent.tick(T0)
    obs.wait_topic(topics.birth(GW))
    agent.transport.client.socket().shutdown(socket.SHUT_RDWR)  # no DISCONNECT packet
    death = codec.decode_death(obs.wait_topic(topics.death(GW))[0].payload)
    assert death == {"v": 1, "gateway_id": GW, "bd_seq": 0, "ts_ms": T0, "reason": "lost"}
    obs.close()


def test_broker_restart_rebirth_and_queued_qos1_vector_not_lost(mosquitto):
    broker = mosquitto(persistence=True)
    agent = make_agent(broker)
    agent.tick(T0)
    obs = Observer(broker)
    obs.wait_topic(topics.birth(GW))
    obs.close()
    broker.stop()
    for r in (1, 2, 3):  # offline rounds: the agent notices and stores its reports
        agent.tick(T0 + 2000 * r, 20)
    assert not agent.connected and agent.store.depth >= 2
    broker.start()
    restarted = time.monotonic()
    ctl = Observer(broker)
    ctl.publish(topics.vector(GROUP), vector(7, [1, 0, 0], T0 + 7000))  # queued for the gateway
    now = T0 + 7000
    while agent.metrics["vectors_accepted"] == 0:
        assert time.monotonic() - restarted < 10, "control did not resume within 10 s"
        now += 50
        agent.tick(now, 50)
    # the retained birth of session 0 (kept by the broker's persistence), then the re-birth
    ctl.wait(lambda: any(codec.decode_birth(m.payload)["bd_seq"] == 1
                         for m in ctl.on(topics.birth(GW))), what="re-birth with bd_seq 1")
    agent.tick(now + 2000)
    decoded = lambda: [codec.decode_state(m.payload) for m in ctl.on(topics.state(GW))]  # noqa: E731
    ctl.wait(lambda: any(s["vector_round_id"] == 7 for s in decoded()), what="report of round 7")
    states = decoded()
    assert [s["round"] for s in states][:3] == [1, 2, 3]  # stored reports flushed in order
    assert [s["p_w"][0] for s in states if s["vector_round_id"] == 7][0] == [0, 0, 0, 5000]
    assert time.monotonic() - restarted < 10
    ctl.close()


def test_controller_killed_gateway_fail_safe_then_resumes(mosquitto):
    import paho.mqtt.client as mqtt

    broker = mosquitto()
    ctl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ctl-test", protocol=mqtt.MQTTv311)
    ctl.will_set(topics.controller_status(), security.make_status("ctl", False, T0, T0, "k1", KEY), qos=1, retain=True)
    ctl.connect(broker.host, broker.port, keepalive=30)
    ctl.loop_start()
    ctl.publish(topics.controller_status(), security.make_status("ctl", True, T0, T0, "k1", KEY), qos=1,
                retain=True).wait_for_publish(5)
    agent = make_agent(broker)
    agent.tick(T0)
    pump(agent, T0, lambda: agent.controller_online is True, what="retained status online")
    ctl.publish(topics.vector(GROUP), vector(1, [0, 0, 0], T0 + 100), qos=1).wait_for_publish(5)
    pump(agent, T0 + 100, lambda: agent.metrics["vectors_accepted"] == 1, what="vector")
    agent.tick(T0 + 2000)
    assert agent.fail_safe is False
    ctl.socket().shutdown(socket.SHUT_RDWR)  # controller dies: its Will says offline
    pump(agent, T0 + 2100, lambda: agent.controller_online is False, what="controller Will")
    agent.tick(T0 + 4000)
    assert agent.fail_safe is True  # immediately, well within fail_safe_s
    ctl.loop_stop()
    back = Observer(broker, subscribe=())
    back.publish(topics.controller_status(), security.make_status("ctl", True, T0 + 4500, T0 + 4400, "k1", KEY), retain=True)
    back.publish(topics.vector(GROUP), vector(2, [0, 0, 0], T0 + 4500))
    pump(agent, T0 + 4500, lambda: agent.metrics["vectors_accepted"] == 2, what="resumed vector")
    agent.tick(T0 + 6000)
    assert agent.fail_safe is False and agent.vector_round_id == 2
    back.close()
