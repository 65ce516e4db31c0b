"""Bench: the live control loop over one local mosquitto.

    python -m bench.mqtt                       # 1,000 gateways × 100 devices, 10 min real time
    python -m bench.mqtt --duration-s 120      # shorter
    python -m bench.mqtt --gateways 100 --devices-per-gateway 20 --duration-s 60 --json out.json
    python -m bench.mqtt --gateways 2000 --device-model vector --aggregators 2   # scale-out mode

Runs, in this order and in the same process tree:
1. baseline: raw paho → mosquitto publish/subscribe of state-report-sized payloads (QoS 0),
   one publisher process publishing as fast as it can, one subscriber counting (messages/s);
2. the closed loop: `colorgrid controller` service (this process) + the gateway fleet (child
   processes, real edge_agent agents, one MQTT connection each) at real time (2-s rounds),
   tracking base 50 % ± 15 % of demand with the packaged regulation signal.

`--aggregators N` (N >= 1): N `colorgrid aggregator --region all --shared` processes split the
state reports on the MQTT 5 shared subscription and the controller reads their region sums only
(docs/scale-out.md); `--device-model vector`: each gateway keeps its real agent (session, codec,
signatures, fail-safe) and its devices are stepped as arrays (firmware_sim.vector_gateway).
CPU per process (fleet workers, aggregators, mosquitto, this process = controller + bench) is
sampled during the loop: where the time goes.

Prints round latency p50/p99 (controller round boundary → vector accepted at the gateway),
messages/s, missed rounds, tracking (RMS % of regulation capacity, PJM-style score), and the
ratio of the loop's message throughput to the raw baseline (how much of the broker+client
capacity the loop uses: the loop's rate is set by N gateways / round, not by saturation).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from bench._report import Report


def _raw_publisher(port: int, payload: bytes, duration_s: float, ready, go) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-pub")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.set()
    go.wait(10)
    t_end = time.monotonic() + duration_s
    n = 0
    while time.monotonic() < t_end:
        for _ in range(100):
            client.publish("bench/raw", payload, qos=0)
        n += 100
        while len(client._out_packet) > 5000:  # bounded: measure delivery, not queueing
            time.sleep(0.0005)
    client.loop_stop()
    client.disconnect()


def raw_baseline(port: int, payload: bytes, duration_s: float) -> float:
    """Messages/s delivered end to end by raw paho publish → mosquitto → paho subscriber."""
    count = [0]
    lock = threading.Lock()

    def on_message(c, u, m):
        with lock:
            count[0] += 1
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/raw", qos=0)
    sub.loop_start()
    time.sleep(0.3)
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    pub = ctx.Process(target=_raw_publisher, args=(port, payload, duration_s, ready, go), daemon=True)
    pub.start()
    ready.wait(20)
    go.set()
    time.sleep(0.5)                          # skip the start-up transient
    with lock:
        c0, t0 = count[0], time.monotonic()
    time.sleep(max(0.5, duration_s - 1.0))
    with lock:
        c1, t1 = count[0], time.monotonic()
    pub.join(duration_s + 10)
    sub.loop_stop()
    sub.disconnect()
    return (c1 - c0) / (t1 - t0)


class CpuSampler:
    """CPU seconds of this process and of every descendant, by role, sampled while they live."""

    def __init__(self) -> None:
        import psutil
        self.psutil = psutil
        self.me = psutil.Process()
        self.last: dict[int, tuple[str, float]] = {}
        self.t0 = time.monotonic()
        self.base = {self.me.pid: self._cpu(self.me)}     # processes already running: count from now
        for proc in self.me.children(recursive=True):
            try:
                self.base[proc.pid] = self._cpu(proc)
            except psutil.Error:
                pass

    @staticmethod
    def _cpu(proc) -> float:
        t = proc.cpu_times()
        return t.user + t.system

    @staticmethod
    def _role(proc) -> str:
        cmd = " ".join(proc.cmdline())
        if "mosquitto" in cmd:
            return "mosquitto"
        if " aggregator " in cmd:
            return "aggregators"
        if "multiprocessing" in cmd:
            return "fleet workers"
        return "other"

    def sample(self, *_args) -> None:
        for proc in self.me.children(recursive=True):
            try:
                self.last[proc.pid] = (self._role(proc), self._cpu(proc) - self.base.get(proc.pid, 0.0))
            except self.psutil.Error:
                pass
        self.last[self.me.pid] = ("controller + bench (this process)", self._cpu(self.me) - self.base[self.me.pid])

    def shares(self) -> dict[str, float]:
        """role -> CPU % of one core over the sampled time."""
        wall = max(1e-9, time.monotonic() - self.t0)
        out: dict[str, float] = {}
        for role, cpu in self.last.values():
            out[role] = out.get(role, 0.0) + 100.0 * cpu / wall
        return out


def start_aggregators(n: int, url: str, clock_spec: str, key: bytes, workdir: Path) -> list:
    """n `colorgrid aggregator --region all --shared` children (key id rk)."""
    key_file = workdir / "region.key"
    key_file.write_text(json.dumps({"rk": key.hex()}))
    procs = []
    for j in range(n):
        log = open(workdir / f"agg{j}.log", "ab")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "colorgrid", "aggregator", "--region", "all", "--prefix", "gw-", "--shared",
             "--broker", url, "--hmac-key-file", str(key_file), "--key-id", "rk", "--aggregator-id", f"a{j}",
             "--clock", clock_spec, "--log-level", "WARNING"], stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        log.close()
    return procs


def stop_aggregators(procs: list) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--devices-per-gateway", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="fleet worker processes (default 2)")
    parser.add_argument("--duration-s", type=float, default=600.0, help="closed-loop wall time (default 600)")
    parser.add_argument("--warmup-s", type=float, default=180.0, help="left out of tracking metrics (default 180)")
    parser.add_argument("--baseline-s", type=float, default=5.0, help="raw paho baseline duration (default 5)")
    parser.add_argument("--aggregators", type=int, default=0,
                        help="0 (default): the controller reads every gateway state; N >= 1: N shared "
                             "region aggregators and the controller on region sums")
    parser.add_argument("--device-model", choices=("agent", "vector"), default="agent",
                        help="agent (default): edge_agent's GatewayCore per gateway; vector: numpy slices")
    rep = Report("mqtt", argv, parser)
    args = rep.args

    from cloud.clock import SimClock
    from cloud.goals import RegulationGoal
    from cloud.goals import FractionOfDemand
    from cloud.region import RegionMap, RegionView
    from cloud.rounds import ControllerCore
    from edge_agent import codec
    from firmware_sim.broker import MosquittoBroker
    from firmware_sim.closed_loop import run_closed_loop
    from firmware_sim.gateway_fleet import FleetSpec

    key = b"bench-mqtt-hmac-key-000000000000"
    sample = codec.encode_state("gw-00000", "g0", 0, 1, int(time.time() * 1000), 1,
                                [[1234567, 234567, 345678, 45678]] * 3, [[100, 20, 30, 4]] * 3, 12345, False, 0)
    with MosquittoBroker() as broker:
        raw = raw_baseline(broker.port, sample, args.baseline_s)
        rep.figure("raw_paho_mosquitto_msgs_per_s", raw, "1/s", note=f"{len(sample)}-byte payload, QoS 0")

        if args.aggregators < 0:
            parser.error("--aggregators: expected >= 0")
        clock = SimClock(1.0)
        goal = FractionOfDemand(RegulationGoal(0.5, 0.15, start_ms=clock.origin_ms))
        region_key = b"bench-mqtt-region-key-0000000000"
        regions = (RegionView(RegionMap({"all": {"prefixes": ["gw-"]}}), {"rk": region_key}, round_ms=2000)
                   if args.aggregators else None)
        core = ControllerCore("bench", goal, "k1", key, round_ms=2000, keep_records=True, regions=regions)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=args.gateways,
                         devices_per_gateway=args.devices_per_gateway, clock_spec=clock.spec(), key=key,
                         device_model=args.device_model)
        print(f"# closed loop: {args.gateways} gateways x {args.devices_per_gateway} devices "
              f"({args.device_model} model), {args.processes} fleet processes, "
              f"{args.aggregators or 'no'} aggregator(s), {args.duration_s:g} s real time, 2-s rounds")
        workdir = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
        aggs = start_aggregators(args.aggregators, broker.url, clock.spec(), region_key, workdir)
        cpu = CpuSampler()
        try:
            time.sleep(2.0 if aggs else 0.0)          # aggregators subscribed before the births
            result = run_closed_loop("127.0.0.1", broker.port, spec, core, clock, args.duration_s,
                                     args.processes, progress=cpu.sample)
        finally:
            cpu.sample()
            stop_aggregators(aggs)

    fig = result.figures()
    warmup_s = min(args.warmup_s, args.duration_s / 3.0)   # short runs: still score the last 2/3
    track = result.tracking(warmup_s, goal)
    rep.figure("warmup_s", warmup_s, "s")
    rep.figure("devices", args.gateways * args.devices_per_gateway)
    rep.figure("controller_rounds", fig["controller_rounds"])
    rep.figure("round_latency_p50_ms", fig["vector_latency_p50_ms"], "ms",
               note="round boundary -> vector accepted at gateway")
    rep.figure("round_latency_p99_ms", fig["vector_latency_p99_ms"], "ms", target="< 2000 (closes in the round)")
    rep.figure("controller_round_compute_p99_ms", fig["controller_round_compute_p99_ms"], "ms")
    rep.figure("missed_rounds_controller", fig["controller_missed_rounds"], target="0")
    rep.figure("gateway_rounds", fig["gateway_rounds"])
    rep.figure("gateway_rounds_without_fresh_vector", fig["gateway_rounds_held"],
               note="held: the vector of that round arrived after the gateway's round")
    rep.figure("rounds_with_fresh_vector_pct", fig["rounds_with_fresh_vector_pct"], "%")
    rep.figure("rounds_fail_safe_pct", fig["rounds_fail_safe_pct"], "%", note="start-up rounds before the first vector")
    rep.figure("messages_total", fig["messages_total"])
    rep.figure("loop_msgs_per_s", fig["messages_per_s"], "1/s", note="reports in + vectors delivered")
    rep.ratio("loop_vs_raw_throughput", fig["messages_per_s"], raw,
              note="share of raw paho->mosquitto capacity the loop uses")
    rep.figure("aggregators", args.aggregators, note="0: controller reads every state")
    if args.aggregators:
        rep.figure("controller_states_read", core.aggregator.counters["states"], target="0 in region mode")
        rep.figure("region_sums_accepted", core.regions.inbox.accepted)
        rep.figure("region_sums_rejected", sum(core.rejected.values()))
    for role, pct in sorted(cpu.shares().items()):
        rep.figure("cpu_pct_" + role.split(" ")[0].replace("+", ""), pct, "% of a core",
                   note=f"{role} (2 cores = 200 %)")
    rep.figure("rounds_scored", track["rounds_scored"])
    if track.get("rms_pct_of_capacity") is not None:
        rep.figure("rms_pct_of_capacity", track["rms_pct_of_capacity"], "%")
    if "pjm_score" in track:
        rep.figure("pjm_score", track["pjm_score"], target=">= 0.9")
    else:
        print(f"pjm_score: not computed ({track.get('pjm_note', 'run too short')}; needs >= 300 s after warm-up)")
    rep.done()


if __name__ == "__main__":
    main()
