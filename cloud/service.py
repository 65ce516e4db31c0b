"""The cloud controller service: asyncio + aiomqtt around `cloud.rounds.ControllerCore`.

    service = ControllerService(core, "127.0.0.1", 1883, clock=SimClock())
    await service.run(stop_event)

Behaviour:
- connects with a persistent session (client id `ctl-{controller_id}`, clean_session False) and a
  Last Will that sets the retained controller status to offline; on every (re)connect it publishes
  the retained status online and subscribes to every gateway topic, to the dispatch topics and
  to its own status topic (QoS 1): a foreign retained status (forged, or a replay of its Will)
  is overwritten with a fresh online one (`ControllerCore._status_seen`);
- reconnects when the broker goes away with the project's one reconnect policy,
  `edge_agent.reconnect.Backoff`: min(cap, base · 2^n) · (½ + U(0, ½)), base 0.5 s and cap 10 s by
  default (`backoff_base_ms`, `backoff_cap_ms`); rounds are not run while disconnected (gateways fall back to fail-safe on their own);
- every round boundary (origin + n · round_ms of the clock) runs `core.control_round` and
  publishes the signed vectors at QoS 1; a boundary passed while busy is counted in
  `missed_rounds` and skipped (no burst of stale vectors);
- every message goes through `core.handle`, which logs and skips bad input: the service never
  crashes on a payload;
- on stop it publishes the retained status offline itself and disconnects cleanly.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable

import aiomqtt

from cloud.clock import SimClock
from cloud.mqtt5 import SessionClient
from cloud.rounds import ControllerCore, Publish
from edge_agent import topics, urls
from edge_agent.reconnect import Backoff

log = logging.getLogger("colorgrid.cloud.service")


class ServiceError(RuntimeError):
    """A configuration the service cannot run with (message names the field)."""


async def _cancel_all(tasks, attempts: int = 20) -> None:
    """Cancel `tasks` and wait until they are done. Python 3.11's `asyncio.wait_for` (inside
    aiomqtt's publish) can lose a cancellation that arrives as its future completes, so the
    cancel is repeated (the loops also watch the session's `ended` event)."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.error("%d session task(s) did not stop", len(pending))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()      # retrieved: no "exception never retrieved" warning


async def run_reconnecting(service, stop: asyncio.Event, logger: logging.Logger = log) -> None:
    """The one reconnect loop of the cloud's MQTT services: `service._client()` → an aiomqtt
    client, `service._session(client, stop)` runs one connection; on a lost connection wait
    `service.backoff` (edge_agent.reconnect) and connect again, until `stop` is set."""
    service.backoff.success()
    while not stop.is_set():
        try:
            async with service._client() as client:
                service.backoff.success()
                await service._session(client, stop)
        except aiomqtt.MqttError as exc:
            service.connected.clear()
            delay = service.backoff.failure(int(time.monotonic() * 1000)) / 1000.0
            logger.warning("broker connection lost (%s); reconnect in %.1f s", exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
    service.connected.clear()


def parse_broker_url(url: str, field: str = "broker") -> tuple[str, int]:
    """'mqtt://host[:port]' → (host, port) by `edge_agent.urls` (the one parser; the service has no
    TLS set-up, so mqtts:// is refused); errors raise ServiceError naming `field`."""
    try:
        host, port, _ = urls.parse_broker_url(url, field, tls_allowed=False)
    except urls.UrlError as exc:
        raise ServiceError(str(exc)) from None
    return host, port


class ControllerService:
    def __init__(self, core: ControllerCore, host: str, port: int, clock: SimClock | None = None,
                 username: str | None = None, password: str | None = None,
                 on_round: Callable[[int, float], None] | None = None,
                 backoff_base_ms: int = 500, backoff_cap_ms: int = 10_000,
                 rng: random.Random | None = None) -> None:
        try:
            self.backoff = Backoff(rng or random.Random(), backoff_base_ms, backoff_cap_ms)
        except ValueError:
            raise ServiceError(f"backoff_base_ms, backoff_cap_ms: need 0 < base <= cap, got "
                               f"{backoff_base_ms!r}, {backoff_cap_ms!r}") from None
        self.core = core
        self.host, self.port = host, port
        self.clock = clock or SimClock()
        self.username, self.password = username, password
        self.on_round = on_round
        self.connected = asyncio.Event()
        self.connects = 0
        self.rounds = 0
        self.missed_rounds = 0
        self.round_compute_ms: list[float] = []
        self.publish_errors = 0
        self._live: aiomqtt.Client | None = None

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(topics.controller_status(), self.core.status_payload(False, self.clock.now_ms()),
                            qos=1, retain=True)
        # MQTT 5 session + message expiry on vectors/commands, 3.1.1 fallback (cloud/mqtt5.py)
        return SessionClient(self.host, self.port, clock=self.clock, identifier=f"ctl-{self.core.controller_id}",
                             will=will, keepalive=10, timeout=10,
                             username=self.username, password=self.password,
                             max_queued_incoming_messages=100_000)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; survives broker restarts."""
        await run_reconnecting(self, stop)

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        self.connects += 1
        self.core.on_connect(self.clock.now_ms())      # sessions re-synchronise: no rebirth storm
        for topic_filter in self.core.subscriptions():   # gateways (or region sums) and dispatches
            await client.subscribe(topic_filter, qos=1)
        await client.publish(topics.controller_status(), self.core.status_payload(True, self.clock.now_ms()),
                             qos=1, retain=True)
        # after our own online status: a foreign one seen here (forged, a replayed Will) is
        # overwritten by the core (ControllerCore._status_seen)
        await client.subscribe(topics.controller_status(), qos=1)
        self._live = client
        self.connected.set()
        log.info("controller %s connected to %s:%d", self.core.controller_id, self.host, self.port)
        ended = asyncio.Event()          # the session is over: loops stop even if a cancel is lost
        reader = asyncio.create_task(self._reader(client, ended))
        ticker = asyncio.create_task(self._ticker(client, ended))
        stopper = asyncio.create_task(stop.wait())
        done, pending = await asyncio.wait({reader, ticker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        self._live = None
        ended.set()
        await _cancel_all(pending)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # MqttError → reconnect in run()
        if stop.is_set():
            await client.publish(topics.controller_status(),
                                 self.core.status_payload(False, self.clock.now_ms()), qos=1, retain=True)

    async def request(self, gateway_id: str, cmd: str, params: dict | None = None,
                      timeout_s: float = 10.0) -> dict:
        """Send a signed command to one gateway and wait for its response (same `txn`)."""
        if self._live is None:
            raise ServiceError("request: not connected")
        txn, (topic, payload, qos, retain) = self.core.request(gateway_id, cmd, self.clock.now_ms(), params)
        await self._live.publish(topic, payload, qos=qos, retain=retain)
        deadline = time.monotonic() + timeout_s
        while txn not in self.core.responses:
            if time.monotonic() > deadline:
                self.core.pending_txns.pop(txn, None)
                raise ServiceError(f"request {txn}: no response from {gateway_id} within {timeout_s} s")
            await asyncio.sleep(0.02)
        return self.core.responses.pop(txn)

    async def _reader(self, client: aiomqtt.Client, ended: asyncio.Event) -> None:
        async for message in client.messages:
            if ended.is_set():
                return
            try:
                out = self.core.handle(str(message.topic), message.payload, self.clock.now_ms(),
                                       retained=bool(message.retain))
            except Exception:  # a defect in our own code must not stop the service either
                log.exception("unexpected error handling %s", message.topic)
                continue
            if out:
                await self._publish(client, out)

    async def _publish(self, client: aiomqtt.Client, items: list[Publish]) -> None:
        for topic, payload, qos, retain in items:
            await client.publish(topic, payload, qos=qos, retain=retain)

    async def _ticker(self, client: aiomqtt.Client, ended: asyncio.Event) -> None:
        round_ms = self.core.round_ms
        origin = self.clock.origin_ms
        n = (self.clock.now_ms() - origin) // round_ms + 1
        while not ended.is_set():
            boundary = origin + n * round_ms
            await self.clock.asleep_until(boundary)
            now = self.clock.now_ms()
            late = (now - boundary) // round_ms
            if late > 0:  # we were busy past whole rounds: skip them, count them
                self.missed_rounds += int(late)
                n += int(late)
                boundary = origin + n * round_ms
            t0 = time.perf_counter()
            try:
                out = self.core.control_round(boundary)
            except Exception:  # a defect in a round must not stop the service
                log.exception("control round at %d failed", boundary)
                out = []
            self.round_compute_ms.append((time.perf_counter() - t0) * 1000.0)
            if ended.is_set():
                return
            await self._publish(client, out)
            self.rounds += 1
            if self.on_round is not None:
                self.on_round(self.rounds, (time.perf_counter() - t0) * 1000.0)
            n += 1
