"""Many paho-mqtt clients on one thread: the transport that lets one process host hundreds of
gateway agents (one real MQTT connection, Will and persistent session per gateway).

`MuxLoop` owns a `selectors` selector over every client socket (registered through paho's
socket open/close callbacks) and drives paho's non-threaded API: `loop_read` when a socket is
readable, `loop_write` when paho has queued output, `loop_misc` (keepalive, timeouts) once a second.
`MuxTransport` implements the edge_agent transport contract (edge_agent/transport.py) on one of
those clients; `poll()` never blocks — the fleet's scheduler, not the agent, decides when to wait
(`MuxLoop.run_once(timeout_s)`).

Sessions as `edge_agent.transport_paho`: MQTT 5 with clean start off and a session expiry when the
broker speaks it (`protocol="auto"`, asked once per process), else MQTT 3.1.1 with clean session
off; the broker's DISCONNECT reason code is in the TransportError the agent logs.
"""
from __future__ import annotations

import selectors
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.mqtt5_cpython import SESSION_EXPIRY_S, speaks_v5
from edge_agent.transport import TransportError
from edge_agent.transport_paho import PROTOCOLS, reason_text


class MuxLoop:
    def __init__(self, misc_interval_s: float = 1.0) -> None:
        self.sel = selectors.DefaultSelector()
        self.clients: set[mqtt.Client] = set()
        self.dirty: set = set()   # transports that received messages since the caller last looked
        self.misc_interval_s = misc_interval_s
        self._last_misc = time.monotonic()

    def add(self, client: mqtt.Client) -> None:
        self.clients.add(client)
        client.on_socket_open = self._on_open
        client.on_socket_close = self._on_close

    def discard(self, client: mqtt.Client) -> None:
        self.clients.discard(client)

    def _on_open(self, client, userdata, sock) -> None:
        try:
            self.sel.register(sock, selectors.EVENT_READ, client)
        except (KeyError, ValueError):
            pass

    def _on_close(self, client, userdata, sock) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def run_once(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for socket activity and service it; returns sockets served."""
        served = 0
        if self.sel.get_map():
            events = self.sel.select(max(0.0, timeout_s))
            for key, _ in events:
                client = key.data
                client.loop_read(max_packets=10)
                served += 1
        elif timeout_s > 0:
            time.sleep(timeout_s)
        for client in list(self.clients):
            if client.want_write():
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= self.misc_interval_s:
            self._last_misc = now
            for client in list(self.clients):
                client.loop_misc()
        return served


class MuxTransport:
    """edge_agent transport contract over one paho client driven by a shared `MuxLoop`."""

    def __init__(self, loop: MuxLoop, client_id: str, host: str, port: int, keepalive_s: int = 30,
                 username: str | None = None, password: str | None = None, protocol: str = "auto",
                 session_expiry_s: int = SESSION_EXPIRY_S) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.loop = loop
        self.client_id = client_id
        self.host, self.port = host, port
        self.keepalive_s = keepalive_s
        self.protocol, self.session_expiry_s = protocol, int(session_expiry_s)
        self._credentials = (username, password)
        self.inbox: list[tuple[str, bytes]] = []
        self._up = False
        self.connects = 0
        self.down_reason = "not connected"     # why the link went down (named in TransportError)
        self.v5 = protocol != "3.1.1"
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        if self.v5:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=False, protocol=mqtt.MQTTv311)
        username, password = self._credentials
        if username is not None:
            client.username_pw_set(username, password)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.loop.add(client)
        return client

    def _choose_protocol(self) -> None:
        if self.protocol != "auto":
            return
        try:
            v5 = speaks_v5(self.host, self.port)
        except OSError as exc:
            raise TransportError(f"connect to {self.host}:{self.port} failed: {exc}") from None
        if v5 != self.v5:
            self.loop.discard(self.client)
            self.v5 = v5
            self.client = self._make_client()

    def _on_message(self, client, userdata, msg) -> None:
        self.inbox.append((msg.topic, bytes(msg.payload)))
        self.loop.dirty.add(self)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._up = False
            self.down_reason = f"connection refused: {reason_text(reason_code)}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._up = False
        by_broker = getattr(flags, "is_disconnect_packet_from_server", False)
        self.down_reason = (("disconnected by the broker: " if by_broker
                             else "closed without a DISCONNECT from the broker: ") + reason_text(reason_code))

    # ------------------------------------------------------------- contract
    def connect(self, will=None) -> None:
        self._choose_protocol()
        self.client.will_clear()
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        try:
            if self.v5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry_s
                self.client.connect(self.host, self.port, keepalive=self.keepalive_s, clean_start=False,
                                    properties=props)
            else:
                self.client.connect(self.host, self.port, keepalive=self.keepalive_s)
        except (OSError, ValueError) as exc:
            self._up = False
            raise TransportError(f"connect to {self.host}:{self.port} failed: {exc}") from None
        self._up = True
        self.connects += 1

    def disconnect(self) -> None:
        if self._up:
            self.client.disconnect()
            self.client.loop_write()
        self._up = False

    def is_connected(self) -> bool:
        return self._up

    def subscribe(self, topic: str, qos: int = 1) -> None:
        rc, _ = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._up = False
            raise TransportError(f"subscribe {topic}: {mqtt.error_string(rc)}")

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if not self._up:
            raise TransportError(self.down_reason)
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._up = False
            raise TransportError(f"publish {topic}: {mqtt.error_string(info.rc)}")

    def poll(self, timeout_ms: int = 0) -> list[tuple[str, bytes]]:
        """Messages received so far (never waits: the fleet loop services the sockets)."""
        if not self._up and not self.inbox:
            raise TransportError(self.down_reason)
        out, self.inbox = self.inbox, []
        return out

    def close(self) -> None:
        self.disconnect()
        self.loop.discard(self.client)
