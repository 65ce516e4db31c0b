"""The transport contract of the gateway agent, and an in-memory fake broker for unit tests.

Contract (duck-typed; MicroPython has no typing.Protocol), implemented by
``transport_paho.PahoTransport`` (CPython / Raspberry Pi), ``transport_umqtt.UmqttTransport``
(MicroPython) and ``FakeTransport`` below:

    connect(will)                      open the session; will = (topic, payload, qos, retain)
                                       or None; persistent session (clean session off)
    disconnect()                       clean close (the broker discards the Will)
    is_connected() -> bool
    subscribe(topic, qos)              topic filter (str)
    publish(topic, payload, qos, retain)   topic str, payload bytes
    poll(timeout_ms) -> [(topic, payload)]  wait at most timeout_ms for incoming messages and
                                       return them (topic str, payload bytes), oldest first

Every method except is_connected raises ``TransportError`` when the connection is (or becomes)
unusable; the agent's reconnect policy decides what happens next. Implementations never
reconnect by themselves: one reconnect policy, in edge_agent/reconnect.py.
MicroPython-compatible.
"""


class TransportError(OSError):
    """The connection is down or the operation failed at the network level."""


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` (one level) and ``#`` (rest, incl. the parent level)."""
    pparts = pattern.split("/")
    tparts = topic.split("/")
    for i, part in enumerate(pparts):
        if part == "#":
            return True
        if i >= len(tparts):
            return False
        if part != "+" and part != tparts[i]:
            return False
    return len(pparts) == len(tparts)


class FakeBroker:
    """In-memory MQTT broker semantics the agent relies on: retained messages, Last Will on an
    unclean loss, persistent sessions that queue QoS-1 messages for absent subscribers,
    optional per-client ACL (``acl(client_id, action, topic) -> bool``), and an up/down switch."""

    def __init__(self, acl=None) -> None:
        self.up = True
        self.acl = acl
        # topic -> (payload, qos)
        self.retained = {}  # type: dict
        # client_id -> {"subs": {filter: qos}, "queue": [(topic, payload)], "persistent": bool}
        self.sessions = {}  # type: dict
        # client_id -> FakeTransport of the connected clients
        self.online = {}  # type: dict
        # every accepted publish: (client_id, topic, payload, qos, retain)
        self.log = []  # type: list
        # refused by the ACL: (client_id, action, topic)
        self.denied = []  # type: list

    def _allowed(self, client_id: str, action: str, topic: str) -> bool:
        if self.acl is None or self.acl(client_id, action, topic):
            return True
        self.denied.append((client_id, action, topic))
        return False

    def route(self, sender: str, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if not self._allowed(sender, "write", topic):
            return  # like mosquitto: silently dropped
        self.log.append((sender, topic, payload, qos, retain))
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        for client_id in sorted(self.sessions):
            session = self.sessions[client_id]
            for pattern in sorted(session["subs"]):
                if topic_matches(pattern, topic) and self._allowed(client_id, "read", topic):
                    sub_qos = min(qos, session["subs"][pattern])
                    client = self.online.get(client_id)
                    if client is not None:
                        client.inbox.append((topic, payload))
                    elif sub_qos > 0 and session["persistent"]:
                        session["queue"].append((topic, payload))
                    break

    def drop(self, client_id: str, fire_will: bool) -> None:
        client = self.online.pop(client_id, None)
        if client is None:
            return
        will = client.will
        client.will = None
        if fire_will and will is not None:
            self.route(client_id, will[0], will[1], will[2], will[3])
        if not self.sessions[client_id]["persistent"]:
            del self.sessions[client_id]

    def kill_client(self, client_id: str) -> None:
        """Simulate a dead socket: the broker notices and publishes the Will."""
        self.drop(client_id, True)

    def stop(self) -> None:
        """Broker goes down: every client is cut off (no Wills: the broker itself is gone)."""
        self.up = False
        for client_id in sorted(self.online):
            self.drop(client_id, False)

    def start(self) -> None:
        self.up = True


class FakeTransport:
    """A client of FakeBroker implementing the transport contract."""

    def __init__(self, broker: FakeBroker, client_id: str, persistent: bool = True) -> None:
        self.broker = broker
        self.client_id = client_id
        self.persistent = persistent
        self.will = None  # type: tuple | None
        self.inbox = []  # type: list
        self.connects = 0

    def connect(self, will=None) -> None:
        if not self.broker.up:
            raise TransportError("connection refused: broker down")
        self.broker.drop(self.client_id, True)  # session takeover
        session = self.broker.sessions.get(self.client_id)
        if session is None or not self.persistent:
            session = {"subs": {}, "queue": [], "persistent": self.persistent}
            self.broker.sessions[self.client_id] = session
        self.will = will
        self.inbox = list(session["queue"])
        session["queue"] = []
        self.broker.online[self.client_id] = self
        self.connects += 1

    def disconnect(self) -> None:
        self.broker.drop(self.client_id, False)

    def is_connected(self) -> bool:
        return self.broker.online.get(self.client_id) is self

    def _check(self) -> None:
        if not self.is_connected():
            raise TransportError("not connected")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._check()
        self.broker.sessions[self.client_id]["subs"][topic] = qos
        for rtopic in sorted(self.broker.retained):
            if topic_matches(topic, rtopic) and self.broker._allowed(self.client_id, "read", rtopic):
                self.inbox.append((rtopic, self.broker.retained[rtopic][0]))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._check()
        self.broker.route(self.client_id, topic, bytes(payload), qos, retain)

    def poll(self, timeout_ms: int = 0) -> list:
        self._check()
        out = self.inbox
        self.inbox = []
        return out
