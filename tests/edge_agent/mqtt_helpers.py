"""Test-side helpers for real-broker tests: an observer/challenger client and an agent builder."""
from __future__ import annotations

import itertools
import threading
import time

import paho.mqtt.client as mqtt

from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport_paho import PahoTransport

KEY = b"k" * 32
KEYS = {"k1": KEY}
_ids = itertools.count()


class Observer:
    """A paho client in its own network thread that records every message it receives."""

    def __init__(self, broker, subscribe=("colorgrid/v1/#",), username=None, password=None):
        self.messages: list[mqtt.MQTTMessage] = []
        self.cond = threading.Condition()
        self.connack = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"observer-{next(_ids)}", protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.subacks: list = []
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, what="CONNACK")
        if self.connack == 0:
            for topic in subscribe:
                self.client.subscribe(topic, qos=1)
            self.wait(lambda: len(self.subacks) >= len(subscribe), what="SUBACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = reason_code.value
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks.append([rc.value for rc in reason_codes])
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait(self, predicate, timeout_s=5.0, what="condition"):
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}"
                self.cond.wait(left)

    def on(self, topic):
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_topic(self, topic, count=1, timeout_s=5.0):
        self.wait(lambda: len(self.on(topic)) >= count, timeout_s, what=f"{count} x {topic}")
        return self.on(topic)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def make_agent(broker, gateway_id="gw-1", group="bus1.a", username=None, password=None,
               fail_safe_s=60, n_devices=10, logs=None):
    devices = [ConstantDevice("d%02d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(n_devices)]
    core = GatewayCore(gateway_id, devices, AgentParams(fail_safe_s=fail_safe_s), seed=7)
    transport = PahoTransport(broker.host, broker.port, "colorgrid-gw-" + gateway_id,
                              username=username, password=password, keepalive_s=5)
    log = (lambda level, msg: logs.append((level, msg))) if logs is not None else (lambda *a: None)
    return GatewayAgent(core, transport, gateway_id, group, KEYS, Prng(3), log=log)


def pump(agent, now_ms, until, timeout_s=5.0, what="condition"):
    """Tick the agent at a fixed (simulated) time, waiting on the socket, until `until()`."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        agent.tick(now_ms, 20)
