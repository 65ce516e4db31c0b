"""Bench: the live control loop over one local mosquitto.

    python -m bench.mqtt                       # 1,000 gateways × 100 devices, 10 min real time
    python -m bench.mqtt --duration-s 120      # shorter
    python -m bench.mqtt --gateways 100 --devices-per-gateway 20 --duration-s 60 --json out.json

Runs, in this order and in the same process tree:
1. baseline: raw paho → mosquitto publish/subscribe of state-report-sized payloads (QoS 0),
   one publisher process publishing as fast as it can, one subscriber counting (messages/s);
2. the closed loop: `colorgrid controller` service (this process) + the gateway fleet (child
   processes, real edge_agent agents, one MQTT connection each) at real time (2-s rounds),
   tracking base 50 % ± 15 % of demand with the packaged regulation signal.

Prints round latency p50/p99 (controller round boundary → vector accepted at the gateway),
messages/s, missed rounds, tracking (RMS % of regulation capacity, PJM-style score), and the
ratio of the loop's message throughput to the raw baseline (how much of the broker+client
capacity the loop uses: the loop's rate is set by N gateways / round, not by saturation).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--devices-per-gateway", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="fleet worker processes (default 2)")
    parser.add_argument("--duration-s", type=float, default=600.0, help="closed-loop wall time (default 600)")
    parser.add_argument("--warmup-s", type=float, default=180.0, help="left out of tracking metrics (default 180)")
    parser.add_argument("--baseline-s", type=float, default=5.0, help="raw paho baseline duration (default 5)")
    rep = Report("mqtt", argv, parser)
    args = rep.args

    from cloud.clock import SimClock
    from cloud.goals import RegulationGoal
    from cloud.goals import FractionOfDemand
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

        clock = SimClock(1.0)
        goal = FractionOfDemand(RegulationGoal(0.5, 0.15, start_ms=clock.origin_ms))
        core = ControllerCore("bench", goal, "k1", key, round_ms=2000, keep_records=True)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=args.gateways,
                         devices_per_gateway=args.devices_per_gateway, clock_spec=clock.spec(), key=key)
        print(f"# closed loop: {args.gateways} gateways x {args.devices_per_gateway} devices, "
              f"{args.processes} fleet processes, {args.duration_s:g} s real time, 2-s rounds")
        result = run_closed_loop("127.0.0.1", broker.port, spec, core, clock, args.duration_s, args.processes)

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
