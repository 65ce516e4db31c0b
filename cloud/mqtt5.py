"""The cloud services' MQTT link: MQTT 5 with a session expiry and message expiry on control
traffic, MQTT 3.1.1 when the broker speaks only that (amqtt, the embedded fallback).

    client = SessionClient(host, port, clock=clock, identifier="ctl-c1", will=will, keepalive=10)
    async with client:                      # MQTT 5 CONNECT, clean start off, session expiry
        await client.publish(topic, payload, qos=1)   # message expiry added for vectors/commands

- **Session**: clean start off and `SessionExpiryInterval` = `session_expiry_s` (default 1 h): a
  controller that reconnects within it finds its subscriptions and the QoS-1 births and deaths
  queued while it was away (MQTT 3.1.1: `clean_session` off, a session that never expires).
- **Message expiry** on every vector (`colorgrid/v1/ctl/vector/+`) and command
  (`colorgrid/v1/ctl/gw/+/cmd`): `MessageExpiryInterval` = the payload's remaining lifetime
  (`expires_ts_ms` − now on the service's clock) in wall seconds (÷ the clock's speed), rounded
  up, at least 1 s. The broker then drops a queued vector that expired before a gateway came
  back, instead of delivering it to be rejected (the signed in-payload expiry stays the rule the
  gateway applies). Mosquitto applies it to 3.1.1 subscribers too. Callers publish as before.
- **Reason codes**: a broker's DISCONNECT reason (MQTT 5) reaches the reconnect loop as
  `aiomqtt.exceptions.MqttCodeError` (`[code:142] Session taken over`), which logs it.
- **Downgrade**: the broker's MQTT version comes from `edge_agent.mqtt5_cpython.speaks_v5`
  (one bare MQTT 5 CONNECT per process and broker, at the first connect): a broker that speaks
  only 3.1.1 (amqtt) gets 3.1.1, `clean_session` off. A CONNACK "unsupported protocol version"
  later on (a broker replaced) forgets the answer, so the next attempt asks again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import topics
from edge_agent.mqtt5_cpython import SESSION_EXPIRY_S, UNSUPPORTED_PROTOCOL, forget, speaks_v5

log = logging.getLogger("colorgrid.cloud.mqtt5")


def message_expiry_s(topic: str, payload: bytes, now_ms: int, speed: float = 1.0) -> int | None:
    """Wall seconds a vector or command on `topic` still lives (>= 1), None for other topics or
    a payload without `expires_ts_ms`."""
    try:
        kind = topics.parse(topic)[0]
    except topics.TopicError:
        return None
    if kind not in ("vector", "cmd"):
        return None
    try:
        expires = json.loads(payload)["expires_ts_ms"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(expires, int):
        return None
    return max(1, math.ceil((expires - now_ms) / 1000.0 / max(speed, 1e-9)))


class SessionClient(aiomqtt.Client):
    """aiomqtt.Client with the session, expiry and downgrade rules of the module docstring.

    `clock`: the service's clock (`now_ms()`, `speed`) for message expiry; `session_expiry_s`:
    the MQTT 5 session expiry; `persistent=False`: a clean start and no session at all (the
    region aggregators); other keyword arguments go to aiomqtt.Client unchanged."""

    def __init__(self, hostname: str, port: int = 1883, *, clock, session_expiry_s: int = SESSION_EXPIRY_S,
                 persistent: bool = True, **kwargs) -> None:
        # aiomqtt.Client.__init__ runs in __aenter__, once the broker's version is known
        self.clock = clock
        self.v5 = False
        self._args = (hostname, int(port), int(session_expiry_s), persistent, kwargs)

    async def __aenter__(self):
        hostname, port, session_expiry_s, persistent, kwargs = self._args
        loop = asyncio.get_running_loop()
        try:
            self.v5 = await loop.run_in_executor(None, speaks_v5, hostname, port)
        except OSError as exc:
            raise aiomqtt.MqttError("connect to %s:%d: %s" % (hostname, port, exc)) from None
        kwargs = dict(kwargs)
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if persistent:
                props.SessionExpiryInterval = session_expiry_s
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=not persistent, properties=props)
        else:
            log.info("broker %s:%d speaks MQTT 3.1.1 only: no session or message expiry", hostname, port)
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not persistent)
        aiomqtt.Client.__init__(self, hostname, port, **kwargs)
        try:
            return await super().__aenter__()
        except MqttConnectError as exc:
            if getattr(exc.rc, "value", exc.rc) in UNSUPPORTED_PROTOCOL:
                forget(hostname, port)
            raise

    async def publish(self, topic: str, payload=None, qos: int = 0, retain: bool = False,
                      properties: Properties | None = None, *args, **kwargs) -> None:
        if self.v5 and properties is None and isinstance(payload, (bytes, bytearray)):
            expiry = message_expiry_s(topic, bytes(payload), self.clock.now_ms(), self.clock.speed)
            if expiry is not None:
                properties = Properties(PacketTypes.PUBLISH)
                properties.MessageExpiryInterval = expiry
        await super().publish(topic, payload, qos, retain, properties, *args, **kwargs)
