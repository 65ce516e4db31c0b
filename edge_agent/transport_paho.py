"""Transport over paho-mqtt 2.x (CPython, Raspberry Pi). CPython-only.

Single-threaded like the MicroPython transport: no ``loop_start`` thread and no paho
auto-reconnect (the agent's one reconnect policy decides); ``poll(timeout_ms)`` runs paho's
``loop`` until messages arrive or the timeout passes. MQTT 3.1.1, persistent session
(clean session off) so QoS-1 vectors queued during an outage are delivered after reconnect.
"""
from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from edge_agent.transport import TransportError


class PahoTransport:
    """Implements the contract in edge_agent/transport.py."""

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, keepalive_s: int = 10, persistent: bool = True,
                 ca_certs: str | None = None, connect_timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = int(port)
        self.keepalive_s = int(keepalive_s)
        self.connect_timeout_s = connect_timeout_s
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent, protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_certs:
            self.client.tls_set(ca_certs=ca_certs)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._inbox: list[tuple[str, bytes]] = []
        self._connack: int | None = None
        self._connected = False

    # paho callbacks (called from inside client.loop, i.e. from our own thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = int(reason_code.value) if hasattr(reason_code, "value") else int(reason_code)
        self._connected = self._connack == 0

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected = False

    def _on_message(self, client, userdata, msg) -> None:
        self._inbox.append((msg.topic, bytes(msg.payload)))

    def connect(self, will=None) -> None:
        self.client.will_clear()
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        self._connack = None
        self._connected = False
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except (OSError, ValueError) as exc:
            raise TransportError("connect to %s:%d failed: %s" % (self.host, self.port, exc))
        deadline = time.monotonic() + self.connect_timeout_s
        while self._connack is None and time.monotonic() < deadline:
            rc = self.client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and self._connack is None:
                raise TransportError("connect to %s:%d failed: %s"
                                     % (self.host, self.port, mqtt.error_string(rc)))
        if self._connack is None:
            self.client.disconnect()
            raise TransportError("no CONNACK within %.1f s" % self.connect_timeout_s)
        if self._connack != 0:
            raise TransportError("connection refused (reason %d)" % self._connack)

    def disconnect(self) -> None:
        if self._connected:
            self.client.disconnect()
            self.client.loop(timeout=0.05)
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._require()
        rc, _mid = self.client.subscribe(topic, qos=qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError("subscribe %s: %s" % (topic, mqtt.error_string(rc)))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._require()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._connected = False
            raise TransportError("publish %s: %s" % (topic, mqtt.error_string(info.rc)))

    def poll(self, timeout_ms: int = 0) -> list:
        self._require()
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            rc = self.client.loop(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
            if rc != mqtt.MQTT_ERR_SUCCESS or not self._connected:
                self._connected = False
                raise TransportError("connection lost: %s" % mqtt.error_string(rc))
            if self._inbox or time.monotonic() >= deadline:
                break
        out, self._inbox = self._inbox, []
        return out

    def _require(self) -> None:
        if not self._connected:
            raise TransportError("not connected")
