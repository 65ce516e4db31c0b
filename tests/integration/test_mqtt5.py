"""MQTT 5 on the live links, against real brokers: message expiry on control vectors (the broker
drops a queued vector that expired before the gateway came back), session expiry, disconnect
reason codes in the logs, and MQTT 3.1.1 still working where the broker speaks only that (amqtt,
the embedded fallback) — the controller and the gateways downgrade on their own."""
import asyncio
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
from edge_agent.mqtt5_cpython import speaks_v5
from firmware_sim.broker import EmbeddedBroker
from firmware_sim.closed_loop import ControllerThread
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import KEY, make_agent

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
