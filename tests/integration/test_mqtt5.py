"""MQTT 5 on the live links, against real brokers: message expiry on control vectors (the broker
drops a queued vector that expired before the gateway came back), session expiry, disconnect
reason codes in the logs, and MQTT 3.1.1 still working where the broker speaks only that (amqtt,
the embedded fallback) — the controller and the gateways downgrade on their own."""
import asyncio
import json
import logging
import socket
import time

import paho.mqtt.client as mqtt
import pytest

from cloud import mqtt5
from cloud.clock import SimClock
from cloud.goals import ConstantGoal
from cloud.rounds import ControllerCore
from edge_agent import security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport_paho import PahoTransport
from edge_agent.mqtt5_cpython import speaks_v5
from firmware_sim.broker import EmbeddedBroker, MosquittoBroker
from firmware_sim.closed_loop import ControllerThread
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import KEY, Observer

pytestmark = pytest.mark.broker
GW, GROUP = "gw-1", "bus1.a"


def _publish_with_session_client(broker, items, clock):
    """Publish [(topic, payload)] at QoS 1 through the controller's client (cloud.mqtt5)."""
    async def main():
        async with mqtt5.SessionClient(broker.host, broker.port, clock=clock, identifier="ctl-test",
                                       timeout=10) as client:
            for topic, payload in items:
                await client.publish(topic, payload, qos=1)
    asyncio.run(main())


def test_message_expiry_from_payload_lifetime():
    now = 1_700_000_000_000
    vec = security.make_vector(GROUP, 1, [0, 0, 0], [1, 0, 0], now, 4500, "k1", KEY)
    assert mqtt5.message_expiry_s(topics.vector(GROUP), vec, now) == 5          # 4.5 s, rounded up
    assert mqtt5.message_expiry_s(topics.vector(GROUP), vec, now, speed=4.0) == 2   # 1.125 wall s
    assert mqtt5.message_expiry_s(topics.vector(GROUP), vec, now + 60_000) == 1     # floor 1 s
    cmd = security.make_cmd("t1", "rebirth", now, 30_000, "k1", KEY)
    assert mqtt5.message_expiry_s(topics.cmd(GW), cmd, now) == 30
    assert mqtt5.message_expiry_s(topics.controller_status(), vec, now) is None      # not control
    assert mqtt5.message_expiry_s(topics.vector(GROUP), b"not json", now) is None


def test_controller_downgrades_to_mqtt311_on_amqtt():
    broker = EmbeddedBroker().start()
    try:
        clock = SimClock(1.0)
        core = ControllerCore("ctl-amqtt", ConstantGoal(10.0), "k1", KEY, round_ms=2000)
        ctl = ControllerThread(core, "127.0.0.1", broker.port, clock).start(timeout_s=30)
        assert not speaks_v5("127.0.0.1", broker.port)           # the probe: 3.1.1 only
        ctl.stop()
        assert ctl.service.connects == 1
    finally:
        broker.stop()


def _gateway(broker, protocol, logs, n_devices=4):
    devices = [ConstantDevice("d%02d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(n_devices)]
    core = GatewayCore(GW, devices, AgentParams(), seed=7)
    transport = PahoTransport(broker.host, broker.port, "colorgrid-gw-" + GW, keepalive_s=5, protocol=protocol)
    agent = GatewayAgent(core, transport, GW, GROUP, {"k1": KEY}, Prng(3), backoff_base_ms=100,
                         backoff_cap_ms=500, log=lambda level, msg: logs.append((level, msg)))
    received = []                                     # round ids of every vector the broker delivered
    poll = transport.poll

    def recording_poll(timeout_ms=0):
        out = poll(timeout_ms)
        received.extend(json.loads(p)["round_id"] for t, p in out if t == topics.vector(GROUP))
        return out
    transport.poll = recording_poll
    return agent, received


def _pump(agent, until, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        agent.tick(int(time.time() * 1000), 20)


@pytest.mark.parametrize("gateway_mqtt, publisher", [("auto", "controller"), ("3.1.1", "controller"),
                                                     ("auto", "plain 3.1.1 publisher")])
def test_vector_expired_while_gateway_away_is_not_delivered(mosquitto, gateway_mqtt, publisher):  # noqa: F811
    broker = mosquitto()
    logs = []
    agent, received = _gateway(broker, gateway_mqtt, logs)
    _pump(agent, lambda: agent.connected, what="connect")
    assert agent.transport.v5 == (gateway_mqtt == "auto")      # mosquitto 2 speaks MQTT 5
    watch = Observer(broker, subscribe=(topics.death(GW),))
    agent.transport.client.socket().shutdown(socket.SHUT_RDWR)   # gone, its session stays
    watch.wait_topic(topics.death(GW))
    watch.close()
    clock = SimClock(1.0)
    now = clock.now_ms()
    short = security.make_vector(GROUP, 1, [0, 0, 0], [1, 0, 0], now, 1500, "k1", KEY)    # lives 1.5 s
    long = security.make_vector(GROUP, 2, [0, 0, 0], [1, 0, 0], now, 30_000, "k1", KEY)   # lives 30 s
    if publisher == "controller":
        _publish_with_session_client(broker, [(topics.vector(GROUP), short), (topics.vector(GROUP), long)], clock)
    else:                                               # MQTT 3.1.1, no message expiry: the baseline
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain-pub", protocol=mqtt.MQTTv311)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        for payload in (short, long):
            pub.publish(topics.vector(GROUP), payload, qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
    # the short vector expires meanwhile: expiry 2 s (1.5 s rounded up), mosquitto counts whole seconds
    time.sleep(3.5)
    _pump(agent, lambda: agent.connected and 2 in received, what="reconnect and the queued vector")
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:                     # anything else still queued arrives now
        agent.tick(int(time.time() * 1000), 20)
    if publisher == "controller":
        assert received == [2]                          # the broker dropped the expired one
    else:
        assert received == [1, 2]                       # delivered, then rejected by the payload expiry
        assert any("expired" in r for _t, r in agent.rejections), agent.rejections
    assert agent.metrics["vectors_accepted"] == 1
    agent.shutdown(int(time.time() * 1000))


def test_disconnect_reason_code_is_logged():
    """mosquitto 2.0.11 sends its MQTT 5 DISCONNECT reason codes for protocol violations only (a
    session takeover or a shutdown just closes the socket): a gateway whose birth exceeds the
    broker's max_packet_size is disconnected with 149 "Packet too large", and the agent's log says so."""
    broker = MosquittoBroker(extra_conf="max_packet_size 2048\n").start()
    broker.host = "127.0.0.1"
    try:
        logs = []
        agent, _ = _gateway(broker, "auto", logs, n_devices=80)     # birth ~ 5 KB
        deadline = time.monotonic() + 10
        while not any(m.startswith("connection lost") for _lvl, m in logs):
            assert time.monotonic() < deadline, logs
            agent.tick(int(time.time() * 1000), 20)
        lost = [m for _lvl, m in logs if m.startswith("connection lost")]
        assert "disconnected by the broker: Packet too large (reason 149)" in lost[0], lost
    finally:
        broker.close()
