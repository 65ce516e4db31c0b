"""Transport over micropython-lib ``umqtt.simple`` (MicroPython boards). MicroPython-compatible.

Differences from paho that this shim absorbs:
  * topics are bytes on the wire and in callbacks (we take/return str at the contract);
  * ``publish(topic, msg, retain=False, qos=0)`` and ``set_last_will(topic, msg, retain=False,
    qos=0)`` put *retain before qos* (paho: ``publish(topic, payload, qos, retain)``) — always
    passed by keyword here;
  * no background loop and no automatic keepalive: ``poll`` calls ``check_msg`` and sends a
    PINGREQ every keepalive/2;
  * errors are ``OSError`` / ``MQTTException``: both become TransportError.
``umqtt.robust`` adds its own retry loop; we use ``umqtt.simple`` so that the agent's one
reconnect policy (edge_agent/reconnect.py) stays the only one. ``client_factory`` lets tests
pass a recording fake with umqtt's signature.
"""
import time

from edge_agent.transport import TransportError


def _ticks_ms() -> int:
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()  # type: ignore
    return int(time.time() * 1000)


def _sleep_ms(ms: int) -> None:
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)  # type: ignore
    else:
        time.sleep(ms / 1000)


def _elapsed_ms(start: int, now: int) -> int:
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(now, start)  # type: ignore
    return now - start


class UmqttTransport:
    """Implements the contract in edge_agent/transport.py on umqtt.simple.MQTTClient.

    ``ssl``: None for plain MQTT, or what the installed umqtt.simple expects for TLS (an
    ``ssl.SSLContext`` in micropython-lib >= 1.4, ``True`` in older releases)."""

    def __init__(self, server: str, port: int, client_id: str, user=None, password=None,
                 keepalive_s: int = 10, ssl=None, client_factory=None,
                 persistent: bool = True) -> None:
        if client_factory is None:
            from umqtt.simple import MQTTClient  # type: ignore[import-not-found]
            client_factory = MQTTClient
        self.factory = client_factory
        self.server = server
        self.port = port
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.ssl = ssl
        self.persistent = persistent
        self.client = None
        self.inbox = []  # type: list
        self.last_ping_ms = 0

    def _on_msg(self, topic, msg) -> None:
        if isinstance(topic, (bytes, bytearray)):
            try:
                topic = bytes(topic).decode()
            except Exception:
                topic = "?"  # undecodable topic: the agent rejects it by name
        self.inbox.append((topic, bytes(msg)))

    def connect(self, will=None) -> None:
        self.disconnect_quietly()
        try:
            client = self.factory(self.client_id.encode(), self.server, port=self.port,
                                  user=self.user, password=self.password,
                                  keepalive=self.keepalive_s, ssl=self.ssl)
            client.set_callback(self._on_msg)
            if will is not None:
                topic, payload, qos, retain = will
                client.set_last_will(topic.encode(), payload, retain=retain, qos=qos)
            client.connect(clean_session=not self.persistent)
        except Exception as exc:
            raise TransportError("connect failed: " + repr(exc))
        self.client = client
        self.inbox = []
        self.last_ping_ms = _ticks_ms()

    def disconnect_quietly(self) -> None:
        if self.client is not None:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.client = None

    def disconnect(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:
                pass
        self.client = None

    def is_connected(self) -> bool:
        return self.client is not None

    def _require(self):
        if self.client is None:
            raise TransportError("not connected")
        return self.client

    def _fail(self, what: str, exc) -> None:
        self.disconnect_quietly()
        raise TransportError(what + ": " + repr(exc))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        client = self._require()
        try:
            client.subscribe(topic.encode(), qos=qos)
        except Exception as exc:
            self._fail("subscribe", exc)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        client = self._require()
        try:
            client.publish(topic.encode(), payload, retain=retain, qos=qos)
        except Exception as exc:
            self._fail("publish", exc)

    def poll(self, timeout_ms: int = 0) -> list:
        client = self._require()
        start = _ticks_ms()
        while True:
            try:
                now = _ticks_ms()
                if self.keepalive_s and _elapsed_ms(self.last_ping_ms, now) >= self.keepalive_s * 500:
                    client.ping()
                    self.last_ping_ms = now
                before = len(self.inbox)
                client.check_msg()
            except Exception as exc:
                self._fail("connection lost", exc)
            if len(self.inbox) > before:
                continue  # drain everything that is already buffered
            if self.inbox or _elapsed_ms(start, _ticks_ms()) >= timeout_ms:
                break
            _sleep_ms(10)
        out = self.inbox
        self.inbox = []
        return out
