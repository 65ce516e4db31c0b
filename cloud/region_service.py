"""The regional aggregator service: asyncio + aiomqtt (MQTT 5) around `cloud.region.RegionCore`.

    service = RegionService(core, "127.0.0.1", 1883, clock=SimClock())
    await service.run(stop_event)

Behaviour:
- connects with MQTT 5, client id `agg-{region}-{aggregator_id}`, a clean start and no session
  expiry: an aggregator that dies leaves no session behind, so the broker stops handing it a
  share of the region's reports as soon as the connection drops (keepalive 5 s for a silent
  network loss; a killed process closes its socket at once);
- subscribes (QoS 1) to every gateway birth and death, and to the state reports — plainly in
  exclusive mode, or through the shared subscription ``$share/{region}/colorgrid/v1/gw/+/state``
  (`--shared`), so several aggregators split one region's reports;
- ticks once per round at ``origin + n · round_ms + publish_phase · round_ms`` of the clock
  (default phase 0.85: after the gateways' reports, before the controller's next boundary when
  both share a `--clock`), and publishes the region sums of `core.tick` at QoS 1; a tick passed
  while busy is counted in `missed_ticks` and skipped;
- reconnects with the project's one policy, `edge_agent.reconnect.Backoff`.
"""
from __future__ import annotations

import asyncio
import logging
import random

import aiomqtt

from cloud.clock import SimClock
from cloud.mqtt5 import SessionClient
from cloud.region import RegionCore
from cloud.service import ServiceError, _cancel_all, run_reconnecting
from edge_agent.reconnect import Backoff

log = logging.getLogger("colorgrid.cloud.region_service")


class RegionService:
    def __init__(self, core: RegionCore, host: str, port: int, clock: SimClock | None = None,
                 publish_phase: float = 0.85, username: str | None = None, password: str | None = None,
                 keepalive_s: int = 5, backoff_base_ms: int = 500, backoff_cap_ms: int = 10_000,
                 rng: random.Random | None = None) -> None:
        if not 0.0 <= publish_phase < 1.0:
            raise ServiceError(f"publish_phase: expected 0 <= phase < 1, got {publish_phase!r}")
        try:
            self.backoff = Backoff(rng or random.Random(), backoff_base_ms, backoff_cap_ms)
        except ValueError:
            raise ServiceError(f"backoff_base_ms, backoff_cap_ms: need 0 < base <= cap, got "
                               f"{backoff_base_ms!r}, {backoff_cap_ms!r}") from None
        self.core = core
        self.host, self.port = host, port
        self.clock = clock or SimClock()
        self.publish_phase = publish_phase
        self.username, self.password = username, password
        self.keepalive_s = keepalive_s
        self.connected = asyncio.Event()
        self.connects = 0
        self.ticks = 0
        self.missed_ticks = 0
        self.published = 0

    def _client(self) -> aiomqtt.Client:
        # MQTT 5, clean start, no session (cloud/mqtt5.py; 3.1.1 on a broker without MQTT 5:
        # exclusive mode only, shared subscriptions need MQTT 5)
        return SessionClient(self.host, self.port, clock=self.clock, persistent=False,
                             identifier=f"agg-{self.core.region}-{self.core.aggregator_id}"[:64],
                             keepalive=self.keepalive_s, timeout=10, username=self.username,
                             password=self.password, max_queued_incoming_messages=100_000)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; survives broker restarts."""
        await run_reconnecting(self, stop, log)

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        self.connects += 1
        for topic_filter in self.core.subscriptions():
            await client.subscribe(topic_filter, qos=1)
        self.connected.set()
        log.info("aggregator %s of region %s connected to %s:%d (%s)", self.core.aggregator_id,
                 self.core.region, self.host, self.port, "shared" if self.core.shared else "exclusive")
        ended = asyncio.Event()
        reader = asyncio.create_task(self._reader(client, ended))
        ticker = asyncio.create_task(self._ticker(client, ended))
        stopper = asyncio.create_task(stop.wait())
        done, pending = await asyncio.wait({reader, ticker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        ended.set()
        await _cancel_all(pending)
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()

    async def _reader(self, client: aiomqtt.Client, ended: asyncio.Event) -> None:
        async for message in client.messages:
            if ended.is_set():
                return
            try:
                self.core.handle(str(message.topic), message.payload, self.clock.now_ms())
            except Exception:  # a defect of ours must not stop the service
                log.exception("unexpected error handling %s", message.topic)

    async def _ticker(self, client: aiomqtt.Client, ended: asyncio.Event) -> None:
        round_ms = self.core.round_ms
        origin = self.clock.origin_ms
        lag = int(self.publish_phase * round_ms)
        n = (self.clock.now_ms() - origin - lag) // round_ms + 1
        while not ended.is_set():
            await self.clock.asleep_until(origin + n * round_ms + lag)
            late = (self.clock.now_ms() - origin - lag - n * round_ms) // round_ms
            if late > 0:
                self.missed_ticks += int(late)
                n += int(late)
            boundary = origin + n * round_ms
            try:
                out = self.core.tick(boundary, self.clock.now_ms())
            except Exception:
                log.exception("region tick at %d failed", boundary)
                out = []
            if ended.is_set():
                return
            for topic, payload, qos, retain in out:
                await client.publish(topic, payload, qos=qos, retain=retain)
            self.published += len(out)
            self.ticks += 1
            n += 1
