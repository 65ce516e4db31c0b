"""Simulated gateway fleets over a real broker: N gateways, each the REAL edge_agent code
(`GatewayAgent` + `GatewayCore` + simulated devices) with its own MQTT connection, Last Will and
persistent session; many gateways per process on one thread (`mux_transport.MuxLoop`), several
processes per fleet, so 1,000 gateways × 100 devices fit on 2 cores.

Scheduling: gateway i runs its rounds at  origin + n · round_ms + phase_i  on the shared
(optionally accelerated) `SimClock`, phase_i spread over [0.3, 0.7] · round_ms, i.e. half a round
after the controller's round boundaries (origin + n · round_ms): the controller publishes the
vector of round n at boundary n, every gateway applies it at its round n, reports, and the
controller uses that report at boundary n + 1.

Measured per worker and merged (`FleetStats`):
- vector latency: wall ms from the controller's round boundary (`issued_ts_ms`) to the moment the
  gateway accepted the vector (includes the controller's compute, signing, broker hop, decode,
  signature check);
- rounds a gateway ran with a fresh vector / held (no new vector in time) / in fail-safe;
- per controller round n (bucket), the sum over gateways of enabled kW per tier (EF + ER) of
  their round n, and how many gateways reported in it: the ground truth of "achieved".
"""
from __future__ import annotations

import heapq
import queue
import signal
import logging
import multiprocessing as mp
import time
from typing import Any

import numpy as np

from cloud.clock import SimClock
from edge_agent import security
from edge_agent.device import ConstantDevice, ThermostaticDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from firmware_sim.mux_transport import MuxLoop, MuxTransport
from firmware_sim.vector_gateway import VectorGatewayCore

log = logging.getLogger("colorgrid.firmware_sim.fleet")

# tier-share contracts (k = 3: green, yellow, black) and their weights in the population
CONTRACTS_3 = [((1.0, 0.0, 0.0), 0.3), ((0.0, 1.0, 0.0), 0.2), ((0.5, 0.5, 0.0), 0.2),
               ((0.6, 0.2, 0.2), 0.2), ((0.0, 0.0, 1.0), 0.1)]


DEVICE_MODELS = ("agent", "vector")

# a gateway round run more than round_ms / LATE_ROUND_DIV after it was due counts as late: half a
# round late, its report lands in the next round's bucket and both rounds are incomplete
LATE_ROUND_DIV = 2


class FleetError(ValueError):
    """Bad fleet parameters (field named in the message)."""


class FleetSpec:
    """Everything a worker needs to build its gateways (plain, picklable)."""

    def __init__(self, host: str, port: int, gateways: int = 10, devices_per_gateway: int = 10,
                 groups: int = 1, k: int = 3, seed: int = 1, round_s: float = 2.0,
                 fail_safe_s: float = 60.0, t_ref_s: tuple = (120, 60, 120, 60),
                 clock_spec: str | None = None, key_id: str = "k1", key: bytes = b"",
                 thermostatic_fraction: float = 0.2, id_prefix: str = "gw",
                 vector_max_ttl_s: float = 60.0, keepalive_s: int = 10,
                 username: str | None = None, password: str | None = None,
                 report_key_seed: bytes | None = None, shared_speed=None, mqtt: str = "auto",
                 device_model: str = "agent") -> None:
        if gateways < 1 or devices_per_gateway < 1:
            raise FleetError("gateways, devices_per_gateway: expected >= 1")
        if k != 3:
            raise FleetError("k: the simulated fleet uses the 3-tier contracts (k = 3)")
        if not 0.0 <= thermostatic_fraction <= 1.0:
            raise FleetError("thermostatic_fraction: expected a value in [0, 1]")
        if len(key) < 16:
            raise FleetError("key: HMAC key of at least 16 bytes required")
        self.host, self.port = host, port
        self.gateways, self.devices_per_gateway = gateways, devices_per_gateway
        self.groups, self.k, self.seed = groups, k, seed
        self.round_s, self.fail_safe_s, self.t_ref_s = round_s, fail_safe_s, tuple(t_ref_s)
        self.clock_spec = clock_spec or SimClock().spec()
        # an adaptive clock's cloud.clock.SharedSpeed: workers follow its speed changes (it reaches
        # them as a Process argument inside this spec; None: the fixed clock of clock_spec)
        self.shared_speed = shared_speed
        self.key_id, self.key = key_id, key
        self.thermostatic_fraction = thermostatic_fraction
        self.id_prefix = id_prefix
        self.vector_max_ttl_s = vector_max_ttl_s
        self.keepalive_s = keepalive_s
        self.username, self.password = username, password   # "{gateway_id}" in them: per gateway
        if report_key_seed is not None and len(report_key_seed) < 16:
            raise FleetError("report_key_seed: at least 16 bytes required")
        self.report_key_seed = report_key_seed   # set: every gateway signs its reports
        if mqtt not in ("auto", "5", "3.1.1"):
            raise FleetError(f"mqtt: expected auto, 5 or 3.1.1, got {mqtt!r}")
        self.mqtt = mqtt    # MQTT version of the gateways' sessions (auto: 5 if the broker speaks it)
        if device_model not in DEVICE_MODELS:
            raise FleetError(f"device_model: expected agent or vector, got {device_model!r}")
        # agent: edge_agent.GatewayCore steps every slice (the reference); vector: the same agent
        # around firmware_sim.vector_gateway.VectorGatewayCore (numpy, devices at rated W)
        self.device_model = device_model

    def report_key(self, gateway_id: str) -> bytes | None:
        """The gateway's own key, HMAC-SHA256(report_key_seed, gateway id) (None: unsigned)."""
        if self.report_key_seed is None:
            return None
        return security.hmac_sha256(self.report_key_seed, gateway_id.encode())

    def report_keys(self) -> dict[str, bytes]:
        """{gateway id: its key} for every gateway (for the controller's enrollment list)."""
        return {self.gateway_id(i): self.report_key(self.gateway_id(i)) for i in range(self.gateways)}

    @property
    def round_ms(self) -> int:
        return int(round(self.round_s * 1000))

    def gateway_id(self, i: int) -> str:
        return f"{self.id_prefix}-{i:05d}"

    def group_of(self, i: int) -> str:
        return f"g{i % self.groups}"


def make_devices(spec: FleetSpec, i: int) -> list:
    """Devices of gateway i: deterministic from (seed, i); constant loads and ACs (thermostatic)."""
    rng = np.random.default_rng([spec.seed, i])
    shares = [c for c, _ in CONTRACTS_3]
    weights = np.array([w for _, w in CONTRACTS_3])
    picks = rng.choice(len(shares), size=spec.devices_per_gateway, p=weights / weights.sum())
    rated = rng.integers(500, 4501, size=spec.devices_per_gateway)
    thermo = rng.random(spec.devices_per_gateway) < spec.thermostatic_fraction
    theta0 = rng.uniform(20.0, 24.0, size=spec.devices_per_gateway)
    devices = []
    for d in range(spec.devices_per_gateway):
        dev_id = f"d{d:04d}"
        if thermo[d]:
            devices.append(ThermostaticDevice(dev_id, int(rated[d]), shares[picks[d]], setpoint_c=22.0,
                                              deadband_c=2.0, ambient_c=32.0, ua_w_per_c=150.0,
                                              c_j_per_c=2_000_000, theta0_c=float(theta0[d]), mode="cool",
                                              cop=3.0))
        else:
            devices.append(ConstantDevice(dev_id, int(rated[d]), shares[picks[d]]))
    return devices


def make_agent(spec: FleetSpec, i: int, loop: MuxLoop, log_fn=None) -> GatewayAgent:
    t_ef, t_ev, t_df, t_dv = spec.t_ref_s
    params = AgentParams(k=spec.k, round_s=spec.round_s, t_ef_s=t_ef, t_ev_s=t_ev, t_df_s=t_df, t_dv_s=t_dv,
                         fail_safe_s=spec.fail_safe_s)
    gid = spec.gateway_id(i)
    core_class = VectorGatewayCore if spec.device_model == "vector" else GatewayCore
    core = core_class(gid, make_devices(spec, i), params, seed=spec.seed * 1_000_003 + i)
    transport = MuxTransport(loop, gid, spec.host, spec.port, keepalive_s=spec.keepalive_s,
                             username=_per_gateway(spec.username, gid), password=_per_gateway(spec.password, gid),
                             protocol=spec.mqtt)
    return GatewayAgent(core, transport, gid, spec.group_of(i), {spec.key_id: spec.key},
                        Prng(spec.seed * 7 + i), vector_max_ttl_ms=int(spec.vector_max_ttl_s * 1000),
                        backoff_base_ms=200, backoff_cap_ms=5000, log=log_fn or _quiet_log,
                        report_key=spec.report_key(gid))


def _per_gateway(text: str | None, gateway_id: str) -> str | None:
    """A credential with "{gateway_id}" in it names each gateway's own (the lab ACL's user name
    is the gateway id); any other text is the same for every gateway."""
    return None if text is None else text.replace("{gateway_id}", gateway_id)


def _quiet_log(level: str, message: str) -> None:
    if level not in ("info",):
        log.debug("%s %s", level, message)


class FleetStats:
    """Mergeable worker statistics (see module docstring)."""

    def __init__(self, k: int = 3) -> None:
        self.k = k
        self.latency_ms: list[float] = []
        self.buckets: dict[int, list] = {}   # n -> [n_gateways, enabled_w per tier..., total_w]
        self.metrics: dict[str, int] = {}
        self.rejections: dict[str, int] = {}   # reason class -> count (each agent's last 32)
        self.gateways = 0

    def bucket(self, n: int, enabled_w: list, total_w: int) -> None:
        row = self.buckets.get(n)
        if row is None:
            row = self.buckets[n] = [0] + [0] * self.k + [0]
        row[0] += 1
        for t in range(self.k):
            row[1 + t] += enabled_w[t]
        row[-1] += total_w

    def merge(self, other: "FleetStats") -> None:
        self.latency_ms.extend(other.latency_ms)
        for n, row in other.buckets.items():
            mine = self.buckets.setdefault(n, [0] * len(row))
            for j, v in enumerate(row):
                mine[j] += v
        for key, v in other.metrics.items():
            self.metrics[key] = self.metrics.get(key, 0) + v
        for key, v in other.rejections.items():
            self.rejections[key] = self.rejections.get(key, 0) + v
        self.gateways += other.gateways


class FleetWorker:
    """Runs gateways [lo, hi) of a FleetSpec on one thread until `should_stop()`."""

    def __init__(self, spec: FleetSpec, lo: int, hi: int, counters=None, slot: int = 0) -> None:
        self.spec = spec
        # live progress for the parent (FleetProcesses.progress): [rounds, late, without a fresh
        # vector] of this worker at counters[3 * slot ...], a shared array only this worker writes
        self.counters, self._slot = counters, 3 * slot
        self.clock = SimClock.from_spec(spec.clock_spec, spec.shared_speed)
        self.loop = MuxLoop()
        self.agents = [make_agent(spec, i, self.loop) for i in range(lo, hi)]
        self.stats = FleetStats(spec.k)
        self.stats.gateways = len(self.agents)
        rm = spec.round_ms
        self.phase_ms = [int(rm * (0.3 + 0.4 * ((i * 0.618033988749895) % 1.0))) for i in range(lo, hi)]
        self._accepted = [0] * len(self.agents)

    def _first_round(self, j: int, now: int) -> int:
        rm = self.spec.round_ms
        origin = self.clock.origin_ms
        n = (now - origin) // rm + 1
        return origin + n * rm + self.phase_ms[j]

    def _after_tick(self, j: int, agent: GatewayAgent, ran_round: bool, now: int) -> None:
        acc = agent.metrics["vectors_accepted"]
        if acc != self._accepted[j] and agent.pending is not None:
            issued = agent.pending["issued_ts_ms"]
            self.stats.latency_ms.append((now - issued) / self.clock.speed)
        self._accepted[j] = acc
        if ran_round:
            agg = agent.core.aggregate()
            enabled = [agg.w[t][0] + agg.w[t][1] for t in range(self.spec.k)]
            total = sum(sum(row) for row in agg.w)
            n = (now - self.phase_ms[j] - self.clock.origin_ms + self.spec.round_ms // 2) // self.spec.round_ms
            self.stats.bucket(int(n), enabled, total)

    def _tick(self, j: int, now: int) -> None:
        agent = self.agents[j]
        before, due, applied = agent.metrics["rounds"], agent.next_round_ms, agent.metrics["vectors_applied"]
        agent.tick(now)
        ran = agent.metrics["rounds"] != before
        if ran and self.counters is not None:
            c, o = self.counters, self._slot
            c[o] += 1
            if now - due > self.spec.round_ms // LATE_ROUND_DIV:
                c[o + 1] += 1
            if agent.metrics["vectors_applied"] == applied:
                c[o + 2] += 1
        self._after_tick(j, agent, ran, now)

    def run(self, should_stop, progress=None) -> FleetStats:
        now = self.clock.now_ms()
        index = {id(a.transport): j for j, a in enumerate(self.agents)}
        heap = []
        for j, agent in enumerate(self.agents):  # connect everybody (birth) before the first round
            agent.started_ms = now
            agent.next_round_ms = self._first_round(j, now)
            agent.tick(now)
            heap.append((agent.next_round_ms, j))
        heapq.heapify(heap)
        last_scan = last_progress = time.monotonic()
        while not should_stop():
            now = self.clock.now_ms()
            wait_s = (heap[0][0] - now) / 1000.0 / self.clock.speed if heap else 0.05
            self.loop.run_once(min(0.05, max(0.0, wait_s)))
            now = self.clock.now_ms()
            dirty, self.loop.dirty = self.loop.dirty, set()
            for tr in dirty:
                self._tick(index[id(tr)], now)
            while heap and heap[0][0] <= now:
                _, j = heapq.heappop(heap)
                self._tick(j, now)
                heapq.heappush(heap, (self.agents[j].next_round_ms, j))
            mono = time.monotonic()
            if mono - last_scan > 0.1:  # reconnect attempts that fall between rounds
                last_scan = mono
                for j, agent in enumerate(self.agents):
                    if not agent.connected and agent.backoff.due(now):
                        self._tick(j, now)
            if progress is not None and mono - last_progress > 0.5:
                last_progress = mono
                progress(self)
        for agent in self.agents:
            agent.shutdown(self.clock.now_ms())
        self.loop.run_once(0.0)
        for key in self.agents[0].metrics if self.agents else ():
            self.stats.metrics[key] = sum(a.metrics[key] for a in self.agents)
        for agent in self.agents:
            for _topic, reason in agent.rejections:
                key = reason.split(" (")[0][:60]
                self.stats.rejections[key] = self.stats.rejections.get(key, 0) + 1
            agent.transport.close()
        return self.stats


def _worker_main(spec: FleetSpec, lo: int, hi: int, stop, ready, results, log_level: int,
                 counters=None, slot: int = 0) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the parent, which sets `stop`
    # SIGTERM to the process group (systemd's stop, `kill -TERM -- -PGID`) reaches every worker
    # too: treat it like the parent's stop — finish the round, send deaths, report the stats
    terminated = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    logging.basicConfig(level=log_level)
    try:
        worker = FleetWorker(spec, lo, hi, counters, slot)
        ready.put(hi - lo)
        stats = worker.run(lambda: bool(terminated) or stop.is_set())
        results.put(stats)
    except Exception as exc:  # report, never hang the parent
        log.exception("fleet worker %d..%d failed", lo, hi)
        ready.put(-1)
        results.put(exc)


class FleetProcesses:
    """A fleet split over `processes` child processes (start → ... → stop() returns FleetStats)."""

    def __init__(self, spec: FleetSpec, processes: int = 1, log_level: int = logging.WARNING) -> None:
        if processes < 1:
            raise FleetError("processes: expected >= 1")
        self.spec = spec
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.ready = ctx.Queue()
        self.results = ctx.Queue()
        n = spec.gateways
        bounds = [(lo, hi) for lo, hi in ((p * n // processes, (p + 1) * n // processes)
                                          for p in range(processes)) if hi > lo]
        self.counters = ctx.RawArray("q", 3 * len(bounds))    # see FleetWorker.counters
        self.procs = [ctx.Process(target=_worker_main, daemon=True,
                                  args=(spec, lo, hi, self.stop_event, self.ready, self.results, log_level,
                                        self.counters, slot))
                      for slot, (lo, hi) in enumerate(bounds)]

    def start(self, timeout_s: float = 120.0) -> "FleetProcesses":
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        waiting = len(self.procs)
        while waiting:
            try:
                got = self.ready.get(timeout=0.2)
            except queue.Empty:
                dead = [p.exitcode for p in self.procs if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    self.kill()
                    raise FleetError(f"fleet workers did not start (exit codes {dead})") from None
                continue
            if got < 0:
                self.kill()
                raise FleetError("a fleet worker failed to start (see its log)")
            waiting -= 1
        return self

    def progress(self) -> tuple[int, int, int]:
        """While running: gateway rounds so far, how many ran late (more than round_ms /
        LATE_ROUND_DIV after they were due) and how many ran without a fresh vector."""
        c = self.counters[:]
        return sum(c[0::3]), sum(c[1::3]), sum(c[2::3])

    def stop(self, timeout_s: float = 60.0) -> FleetStats:
        self.stop_event.set()
        total = FleetStats(self.spec.k)
        errors = []
        for _ in self.procs:
            try:
                res = self.results.get(timeout=timeout_s)
            except Exception:
                errors.append("worker did not report")
                continue
            if isinstance(res, Exception):
                errors.append(repr(res))
            else:
                total.merge(res)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        if errors:
            raise FleetError("fleet workers: " + "; ".join(errors))
        return total

    def kill(self) -> None:
        """Hard stop (SIGKILL): the broker fires every gateway's Last Will."""
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)


def summarize(stats: FleetStats) -> dict[str, Any]:
    """Headline figures of a fleet run (latency percentiles in wall ms)."""
    lat = np.asarray(stats.latency_ms) if stats.latency_ms else np.zeros(1)
    m = stats.metrics
    rounds = max(1, m.get("rounds", 0))
    return {
        "gateways": stats.gateways,
        "gateway_rounds": m.get("rounds", 0),
        "vector_latency_p50_ms": float(np.percentile(lat, 50)),
        "vector_latency_p99_ms": float(np.percentile(lat, 99)),
        "rounds_with_fresh_vector_pct": 100.0 * m.get("vectors_applied", 0) / rounds,
        "rounds_fail_safe_pct": 100.0 * m.get("fail_safe_rounds", 0) / rounds,
        # messages on topics a gateway does not read (a broker delivering what was not subscribed)
        # are counted apart from the vectors and commands it rejected
        "vectors_rejected": m.get("rejected", 0) - m.get("rejected_foreign_topic", 0),
        "messages_rejected_foreign_topic": m.get("rejected_foreign_topic", 0),
        "vectors_rejected_as_replay": stats.rejections.get("replay", 0),
        # "expired" on arrival and "expired before its round" (accepted, then late for its round)
        "vectors_rejected_expired": sum(v for key, v in stats.rejections.items()
                                        if key.startswith("expired")),
        "reports_sent": m.get("reports_sent", 0),
        "connects": m.get("connects", 0),
        "connection_losses": m.get("connection_losses", 0),
    }
