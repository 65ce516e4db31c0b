"""`colorgrid fleet`: N simulated gateways running the real edge_agent code against a broker."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time

HELP = "run a simulated gateway fleet (real edge_agent agents, simulated devices) against a broker"


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, fraction, non_negative_int, positive_float
    from colorgrid.results import add_out_argument

    parser.add_argument("--broker", required=True, help="mqtt://host[:port]")
    parser.add_argument("--gateways", type=count, default=100, help="number of gateways (default 100)")
    parser.add_argument("--devices-per-gateway", type=count, default=100, help="devices per gateway (default 100)")
    parser.add_argument("--processes", type=count, default=None,
                        help="worker processes (default: one per 500 gateways, at least 1)")
    parser.add_argument("--groups", type=count, default=1, help="control groups g0..g{N-1} (default 1)")
    parser.add_argument("--hmac-key-file", required=True, type=existing_file,
                        help="HMAC-SHA256 key shared with the controller: hex text or JSON {key_id: hex}")
    parser.add_argument("--key-id", default="k1", help="key id (default k1)")
    parser.add_argument("--round-s", type=positive_float, default=2.0, help="round length, s (default 2)")
    parser.add_argument("--fail-safe-s", type=positive_float, default=60.0, help="fail-safe after this silence, s (default 60)")
    parser.add_argument("--speed", type=positive_float, default=1.0, help="clock acceleration (default 1 = real time)")
    parser.add_argument("--clock", default=None, help="SPEED@ORIGIN_MS shared with the controller (overrides --speed)")
    parser.add_argument("--thermostatic-fraction", type=fraction, default=0.2,
                        help="share of devices that are air conditioners (default 0.2)")
    parser.add_argument("--id-prefix", default="gw", help="gateway ids are PREFIX-00000 ... (default gw)")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="device/PRNG seed (default 1)")
    parser.add_argument("--duration-s", type=positive_float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--report-key-seed", type=existing_file, default=None, metavar="FILE",
                        help="file holding a hex seed (>= 16 bytes): every gateway signs its reports with "
                             "its own key HMAC-SHA256(seed, gateway id) (default: unsigned reports)")
    parser.add_argument("--enrollment-out", default=None, metavar="PATH",
                        help="write the enrollment list of these gateways and their report keys here "
                             "(mode 600), for `colorgrid controller --enrollment PATH`; needs --report-key-seed")
    parser.add_argument("--device-model", choices=("agent", "vector"), default="agent",
                        help="agent: edge_agent's GatewayCore steps every device (the reference); vector: "
                             "the same real agent per gateway (MQTT session, codec, signatures, fail-safe) "
                             "with its devices stepped as numpy arrays at rated W (default agent)")
    parser.add_argument("--mqtt", choices=("auto", "5", "3.1.1"), default="auto",
                        help="MQTT version of the gateways' sessions (default auto: 5 if the broker speaks it)")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", type=existing_file, default=None)
    add_out_argument(parser)


def write_enrollment(path: str, spec) -> None:
    """The fleet's enrollment (cloud.enrollment.enroll_fleet) as JSON, readable by the owner only
    (it holds every gateway's report key); replaced atomically."""
    import json
    import os

    from cloud.enrollment import enroll_fleet

    text = json.dumps(enroll_fleet(spec.report_keys()), sort_keys=True, indent=1) + "\n"
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def run(args) -> int:
    from cloud.clock import SimClock
    from cloud.service import ServiceError, parse_broker_url
    from cloud.config import read_key
    from colorgrid.results import RunOutput
    from firmware_sim.gateway_fleet import FleetError, FleetProcesses, FleetSpec, summarize

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_broker_url(args.broker)
        key_id, key = read_key(args.hmac_key_file, args.key_id)
        clock = SimClock.from_spec(args.clock) if args.clock else SimClock(args.speed)
        password = open(args.password_file).read().strip() if args.password_file else None
        seed = None
        if args.report_key_seed:
            _, seed = read_key(args.report_key_seed, "seed", "--report-key-seed")
        elif args.enrollment_out:
            raise ValueError("--enrollment-out: needs --report-key-seed (the enrolled gateways' keys)")
        spec = FleetSpec(host, port, gateways=args.gateways, devices_per_gateway=args.devices_per_gateway,
                         groups=args.groups, seed=args.seed, round_s=args.round_s, fail_safe_s=args.fail_safe_s,
                         clock_spec=clock.spec(), key_id=key_id, key=key,
                         thermostatic_fraction=args.thermostatic_fraction, id_prefix=args.id_prefix,
                         username=args.username, password=password, report_key_seed=seed,
                         mqtt=args.mqtt, device_model=args.device_model)
        if args.enrollment_out:
            write_enrollment(args.enrollment_out, spec)
        processes = args.processes or max(1, (args.gateways + 499) // 500)
        stop = threading.Event()  # SIGINT/SIGTERM (also to the whole process group) stop the fleet
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        fleet = FleetProcesses(spec, processes).start()
    except (ValueError, OSError, FleetError, ServiceError) as exc:
        print(f"colorgrid fleet: error: {exc}", file=sys.stderr)
        return 2
    print(f"fleet: {args.gateways} gateways x {args.devices_per_gateway} devices ({args.device_model} model) in {processes} "
          f"process(es) on {args.broker}{', signed reports' if seed else ''}"
          f"{', enrollment in ' + args.enrollment_out if args.enrollment_out else ''}; Ctrl-C to stop", flush=True)
    t0 = time.monotonic()
    while not stop.is_set() and (args.duration_s is None or time.monotonic() - t0 < args.duration_s):
        stop.wait(0.2)
    stats = fleet.stop()
    out = RunOutput(args.out, "fleet", {k: v for k, v in vars(args).items() if k != "password_file"},
                    seed=args.seed)
    rows = []
    for n in sorted(stats.buckets):
        b = stats.buckets[n]
        rows.append([n * spec.round_s, b[0]] + [w / 1000.0 for w in b[1:1 + spec.k]]
                    + [sum(b[1:1 + spec.k]) / 1000.0, b[-1] / 1000.0])
    out.write_csv("fleet_rounds.csv", ["t_s", "gateways_reporting"] + [f"enabled_t{i}_kw" for i in range(spec.k)]
                  + ["enabled_kw", "demand_kw"], rows)
    units = {"vector_latency_p50_ms": "ms", "vector_latency_p99_ms": "ms",
             "rounds_with_fresh_vector_pct": "%", "rounds_fail_safe_pct": "%"}
    for name, value in summarize(stats).items():
        out.figure(name, value, units.get(name, ""))
        print(f"  {name:<36} {value:.4g} {units.get(name, '')}" if isinstance(value, float)
              else f"  {name:<36} {value}")
    out.finish()
    return 0
