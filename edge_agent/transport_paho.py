"""Transport over paho-mqtt 2.x (CPython, Raspberry Pi). CPython-only.

Single-threaded like the MicroPython transport: no ``loop_start`` thread and no paho
auto-reconnect (the agent's one reconnect policy decides); ``poll(timeout_ms)`` runs paho's
``loop`` until messages arrive or the timeout passes. Persistent session so QoS-1 vectors queued
during an outage are delivered after reconnect: MQTT 5 with clean start off and a session expiry
(``session_expiry_s``, default 1 h) when the broker speaks it, else MQTT 3.1.1 with clean session
off (``protocol="auto"``, the default: ``edge_agent.mqtt5_cpython.speaks_v5`` asks the broker once
per process; ``"5"`` or ``"3.1.1"`` force one). A connection that goes down names why in the
TransportError the agent logs: the broker's MQTT 5 DISCONNECT reason code
(``disconnected by the broker: Session taken over (reason 142)``) or the socket error.
"""
from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.mqtt5_cpython import SESSION_EXPIRY_S, speaks_v5
from edge_agent.transport import TransportError

PROTOCOLS = ("auto", "5", "3.1.1")


def reason_text(reason_code) -> str:
    """'Session taken over (reason 142)' for a paho ReasonCode, the number for a plain int."""
    value = getattr(reason_code, "value", reason_code)
    return "%s (reason %s)" % (reason_code, value) if hasattr(reason_code, "value") else "reason %s" % value


class PahoTransport:
    """Implements the contract in edge_agent/transport.py."""

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, keepalive_s: int = 10, persistent: bool = True,
                 ca_certs: str | None = None, connect_timeout_s: float = 5.0, protocol: str = "auto",
                 session_expiry_s: int = SESSION_EXPIRY_S) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError("protocol: expected one of %s, got %r" % (", ".join(PROTOCOLS), protocol))
        self.host = host
        self.port = int(port)
        self.keepalive_s = int(keepalive_s)
        self.connect_timeout_s = connect_timeout_s
        self.protocol = protocol
        self.persistent = persistent
        self.session_expiry_s = int(session_expiry_s)
        self._settings = (client_id, username, password, ca_certs)
        self._inbox: list[tuple[str, bytes]] = []
        self._connack: int | None = None
        self._connected = False
        self.down_reason = ""        # set by _on_disconnect: why the link went down
        self._refusal = ""
        self.v5 = protocol != "3.1.1"
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client_id, username, password, ca_certs = self._settings
        if self.v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=not self.persistent, protocol=mqtt.MQTTv311)
        if username is not None:
            client.username_pw_set(username, password)
        if ca_certs:
            client.tls_set(ca_certs=ca_certs)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # paho callbacks (called from inside client.loop, i.e. from our own thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = int(reason_code.value) if hasattr(reason_code, "value") else int(reason_code)
        self._connected = self._connack == 0
        self._refusal = reason_text(reason_code)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected = False
        by_broker = getattr(flags, "is_disconnect_packet_from_server", False)
        self.down_reason = (("disconnected by the broker: " if by_broker
                             else "closed without a DISCONNECT from the broker: ") + reason_text(reason_code))

    def _on_message(self, client, userdata, msg) -> None:
        self._inbox.append((msg.topic, bytes(msg.payload)))

    def _choose_protocol(self) -> None:
        """protocol "auto": MQTT 5 if the broker speaks it (asked once per process)."""
        if self.protocol != "auto":
            return
        try:
            v5 = speaks_v5(self.host, self.port, self.connect_timeout_s)
        except OSError as exc:
            raise TransportError("connect to %s:%d failed: %s" % (self.host, self.port, exc))
        if v5 != self.v5:
            self.v5 = v5
            self.client = self._make_client()

    def connect(self, will=None) -> None:
        self._choose_protocol()
        self.client.will_clear()
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        self._connack = None
        self._connected = False
        self.down_reason = ""
        try:
            if self.v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry_s if self.persistent else 0
                self.client.connect(self.host, self.port, keepalive=self.keepalive_s,
                                    clean_start=not self.persistent, properties=props)
            else:
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
            raise TransportError("connection refused (%s)" % self._refusal)

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
                raise TransportError("connection lost: %s" % (self.down_reason or mqtt.error_string(rc)))
            if self._inbox or time.monotonic() >= deadline:
                break
        out, self._inbox = self._inbox, []
        return out

    def _require(self) -> None:
        if not self._connected:
            raise TransportError("not connected")
