"""`colorgrid demo`: the live system on embedded defaults — broker, controller, gateway fleet.

Starts a private broker when none is given (a `mosquitto` child on a free loopback port, or the
embedded pure-Python amqtt broker when the binary is missing), runs the cloud controller service
and a fleet of gateways running the real edge_agent code over it, tracks a regulation signal for
`--minutes` of simulated time on an accelerated clock, prints metrics with a progress bar and
writes timeseries.csv, summary.json and demo.png under `--out`.

The clock is adaptive (`SimClock.adaptive`, its speed shared with the fleet's worker processes):
when the loop falls behind it (`firmware_sim.closed_loop.SpeedGovernor`: missed controller
rounds, late reports, vectors arriving expired) the demo halves the speed, down to
`--min-speed`, and says so in one line; summary.json keeps the speed history. Every metric is
computed on simulated time, so the score stays valid at any speed. `--fixed-speed` turns this off.
"""
from __future__ import annotations

import hashlib
import logging
import sys

DEFAULT_OUT = "colorgrid-demo"
# the loop is falling behind the accelerated clock when more than this share of vectors reach the
# gateways after their lifetime or of controller rounds are missed
BEHIND_PCT = 1.0
# a vector lives at least this many WALL seconds (and at least 3 rounds): at 20x a 3-round
# lifetime is 0.3 s of wall clock, which a loaded machine overruns (issue 16 item 10)
VECTOR_TTL_WALL_FLOOR_S = 1.5


def vector_ttl_ms(round_s: float, speed: float) -> int:
    """Vector lifetime in simulated ms: max(3 rounds, VECTOR_TTL_WALL_FLOOR_S x speed); at real
    time (speed 1) the controller's default of 3 rounds."""
    return int(max(3 * round_s, VECTOR_TTL_WALL_FLOOR_S * speed) * 1000)

HELP = "live demo: broker + controller + gateway fleet tracking a regulation signal over MQTT"

TRACK_UNITS = {"rms_pct_of_capacity": "%", "capacity_kw": "kW", "mean_abs_error_kw": "kW",
               "vector_latency_p50_ms": "ms", "vector_latency_p99_ms": "ms", "messages_per_s": "1/s",
               "controller_round_compute_p50_ms": "ms", "controller_round_compute_p99_ms": "ms",
               "wall_s": "s", "rounds_with_fresh_vector_pct": "%", "rounds_fail_safe_pct": "%"}


def add_arguments(parser) -> None:
    from colorgrid.args import count, fraction, non_negative_float, non_negative_int, positive_float
    from colorgrid.commands.controller import add_common
    from colorgrid.results import add_out_argument

    parser.add_argument("--broker", default=None,
                        help="mqtt://host[:port] of an existing broker (default: start a private one)")
    parser.add_argument("--embedded-broker", action="store_true",
                        help="use the embedded pure-Python broker (amqtt) even when mosquitto is installed")
    parser.add_argument("--gateways", type=count, default=50, help="simulated gateways (default 50)")
    parser.add_argument("--devices-per-gateway", type=count, default=40, help="devices per gateway (default 40)")
    parser.add_argument("--processes", type=count, default=1, help="fleet worker processes (default 1)")
    parser.add_argument("--minutes", type=positive_float, default=20.0, help="simulated minutes to run (default 20)")
    parser.add_argument("--warmup-s", type=non_negative_float, default=180.0,
                        help="simulated seconds left out of the tracking metrics: the first shed puts "
                             "demand in refractory for up to T_DF + T_DV (default 180)")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="fleet and key seed (default 1)")
    parser.add_argument("--thermostatic-fraction", type=fraction, default=0.2,
                        help="share of devices that are air conditioners (default 0.2)")
    parser.add_argument("--min-speed", type=positive_float, default=1.0,
                        help="slowest the demo slows its clock to when the machine cannot keep up (default 1)")
    parser.add_argument("--fixed-speed", action="store_true",
                        help="never slow the clock down, even when the loop falls behind it")
    add_common(parser)
    parser.set_defaults(speed=20.0)
    add_out_argument(parser)
    for action in parser._actions:  # the demo always writes its results: say where by default
        if action.dest == "out":
            action.default = DEFAULT_OUT
            action.help = f"write timeseries.csv, summary.json, demo.png here (default ./{DEFAULT_OUT})"
    for action in parser._actions:  # the shared controller flags: say the demo's default
        if action.dest == "speed":
            action.help = "clock acceleration: simulated seconds per wall second (default 20)"


_LAST = {"shown": -1}


def _bar(frac: float, core, width: int = 30) -> None:
    """Progress bar: redrawn in place on a terminal, one line per 10 % otherwise."""
    frac = min(max(frac, 0.0), 1.0)
    step = int(frac * 100) if sys.stdout.isatty() else int(frac * 10) * 10
    if step == _LAST["shown"]:
        return
    _LAST["shown"] = step
    done = int(frac * width)
    rec = core.records[-1] if core.records else None
    info = f"goal {rec.goal_kw:9.1f} kW  measured {rec.measured_kw:9.1f} kW" if rec else "waiting for reports"
    end = "" if sys.stdout.isatty() else "\n"
    sys.stdout.write(f"\r[{'#' * done}{'.' * (width - done)}] {frac * 100:5.1f}%  {info}{end}")
    sys.stdout.flush()


def _plot(out, rows, k: int, gateways: int) -> None:
    """Goal vs achieved and enabled kW per tier. A round in which not every gateway reported is
    not a measurement of the fleet: it is left out of the lines (a gap) and marked below them."""
    path = out.path("demo.png")
    if path is None or not rows:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_agent.states import default_tier_names

    names = list(default_tier_names(k))
    nan = float("nan")
    t = [r[0] for r in rows]
    complete = [r[4] == gateways for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax1.plot(t, [r[1] for r in rows], label="goal kW", lw=1.2)
    ax1.plot(t, [r[2] if ok else nan for r, ok in zip(rows, complete)], label="achieved kW (gateways)", lw=1.0)
    missing = [x for x, ok in zip(t, complete) if not ok]
    if missing:
        low = min(r[1] for r in rows)
        ax1.plot(missing, [low] * len(missing), "|", color="grey", ms=6,
                 label=f"incomplete round ({len(missing)}: not every gateway reported; not drawn)")
    ax1.set_ylabel("enabled kW")
    ax1.legend(loc="best", fontsize="small")
    ax1.set_title("colorgrid demo: regulation tracking over MQTT")
    ax2.stackplot(t, *[[r[5 + i] if ok else nan for r, ok in zip(rows, complete)] for i in range(k)],
                  labels=names)
    ax2.set_ylabel("enabled kW per tier")
    ax2.set_xlabel("t, s (simulated)")
    ax2.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> int:
    from cloud.clock import SimClock
    from cloud.service import ServiceError, parse_broker_url
    from colorgrid.commands.controller import core_from_args
    from colorgrid.results import RunOutput
    from firmware_sim.broker import BrokerError, start_broker
    from firmware_sim.closed_loop import SpeedGovernor, run_closed_loop
    from firmware_sim.gateway_fleet import FleetError, FleetSpec
    from cloud.enrollment import Enrollment, GatewayPolicy, enroll_fleet

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # a busy machine makes every gateway report its late vectors: one warning line each would bury
    # the progress bar; they are counted in summary.json (vectors_rejected_expired) instead
    logging.getLogger("colorgrid.cloud.controller").setLevel(logging.ERROR)
    key = hashlib.sha256(f"colorgrid-demo-key-{args.seed}".encode()).digest()
    report_key_seed = hashlib.sha256(f"colorgrid-demo-report-key-{args.seed}".encode()).digest()
    ttl_ms = vector_ttl_ms(args.round_s, args.speed)
    broker = None
    try:
        from cloud.config import parse_goal

        parse_goal(args.goal, 0)  # a bad --goal is named before any broker or fleet starts
        if args.broker:
            host, port = parse_broker_url(args.broker)
            broker_kind = "external"
        else:
            broker = start_broker("amqtt" if args.embedded_broker else "auto")
            host, port, broker_kind = "127.0.0.1", broker.port, broker.kind
        print(f"broker: {broker_kind} at mqtt://{host}:{port}")
        if args.min_speed > args.speed:
            raise ValueError(f"--min-speed: {args.min_speed:g} is above --speed {args.speed:g}")
        clock = SimClock(args.speed) if args.fixed_speed else SimClock.adaptive(args.speed)
        governor = None if args.fixed_speed else SpeedGovernor(clock, args.min_speed, announce=_slowing)
        # every gateway signs its reports with its own key; the controller hears only the enrolled
        spec = FleetSpec(host, port, gateways=args.gateways, devices_per_gateway=args.devices_per_gateway,
                         seed=args.seed, round_s=args.round_s, clock_spec=clock.spec(), key_id=args.key_id,
                         key=key, thermostatic_fraction=args.thermostatic_fraction,
                         report_key_seed=report_key_seed, vector_max_ttl_s=max(60.0, ttl_ms / 1000.0),
                         shared_speed=clock.shared)
        policy = GatewayPolicy(Enrollment.parse(enroll_fleet(spec.report_keys())))
        core = core_from_args(args, args.key_id, key, clock.origin_ms, "demo", policy=policy, ttl_ms=ttl_ms)
        print(f"fleet: {args.gateways} gateways x {args.devices_per_gateway} devices (enrolled, signed reports), "
              f"{args.minutes:g} simulated min at {args.speed:g}x, goal {args.goal}")
        if ttl_ms > 3 * spec.round_ms:
            print(f"vector lifetime {ttl_ms / 1000:g} s simulated = {ttl_ms / 1000 / args.speed:g} s wall at "
                  f"{args.speed:g}x, so vectors a busy machine delivers late still count")
        result = run_closed_loop(host, port, spec, core, clock, args.minutes * 60.0, args.processes, _bar,
                                 governor)
        print()
    except (BrokerError, FleetError, ServiceError, ValueError, OSError, RuntimeError) as exc:
        print()
        print(f"colorgrid demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncolorgrid demo: interrupted (fleet, controller and broker stopped)")
        return 130
    finally:
        if broker is not None:
            broker.close()
    out = RunOutput(args.out, "demo", {**vars(args), "broker_kind": broker_kind}, seed=args.seed)
    k = result.k
    cols = (["t_s", "goal_kw", "achieved_kw", "demand_kw", "gateways_reporting"]
            + [f"enabled_t{i}_kw" for i in range(k)] + ["complete"])
    out.write_csv("timeseries.csv", cols, [r + [int(r[4] == args.gateways)] for r in result.rows])
    figures = result.figures()
    figures.update({key_: v for key_, v in result.tracking(args.warmup_s, core.goal).items() if v is not None})
    figures["missed_rounds"] = figures["controller_missed_rounds"]
    for name in sorted(figures):
        value = figures[name]
        if isinstance(value, str):
            print(f"  {name}: {value}")
            continue
        out.figure(name, value, TRACK_UNITS.get(name, ""))
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {name:<40} {shown} {TRACK_UNITS.get(name, '')}")
    out.figure("vector_ttl_s", ttl_ms / 1000.0, "s")
    speeds = governor.figures() if governor is not None else {
        "speed_initial": args.speed, "speed_final": args.speed, "speed_changes": 0,
        "speed_history": [{"t_sim_s": 0.0, "wall_s": 0.0, "speed": args.speed, "why": "start"}],
        "slowed_down": False}
    for name, value in speeds.items():
        out.figure(name, value, "x" if name in ("speed_initial", "speed_final") else "")
    if speeds["slowed_down"]:
        print(f"  {'speed (simulated s per wall s)':<40} " + " -> ".join(f"{h['speed']:g}x" for h in speeds["speed_history"]))
    out.figure("gateways_enrolled", len(policy.enrollment.records) if policy.enrollment else 0)
    out.figure("reports_rejected_by_controller", sum(core.rejected.values()))
    behind = _falling_behind(figures)
    out.figure("fell_behind", behind is not None)
    _plot(out, result.rows, k, args.gateways)
    out.finish()
    core.registry.close()
    if behind:
        final = speeds["speed_final"]
        advice = (f"rerun with --speed {max(1.0, final / 2):g}" if final > args.min_speed
                  else "it was already at --min-speed; a quieter machine or fewer --gateways will help")
        print(f"colorgrid demo: warning: the loop fell behind the clock ({behind}); the score covers "
              f"complete rounds only — {advice}", file=sys.stderr)
    print(f"results in {args.out}/ (timeseries.csv, summary.json, demo.png)")
    return 0


def _slowing(speed: float, why: str) -> None:
    """The one line a user sees when the demo slows down (after the progress bar's line)."""
    sys.stdout.write(f"\ndemo: machine is busy, slowing the simulation to {speed:g}x ({why})\n")
    sys.stdout.flush()
    _LAST["shown"] = -1


def _falling_behind(figures: dict) -> str | None:
    """Why the run fell behind its accelerated clock (None when it kept up): vectors reaching the
    gateways after their lifetime, or controller rounds missed, above BEHIND_PCT %."""
    delivered = max(1, figures.get("vectors_delivered", 0))
    expired = 100.0 * figures.get("vectors_rejected_expired", 0) / delivered
    missed = 100.0 * figures.get("controller_missed_rounds", 0) / max(1, figures.get("controller_rounds", 0))
    why = []
    if expired > BEHIND_PCT:
        why.append(f"{expired:.1f} % of vectors arrived expired")
    if missed > BEHIND_PCT:
        why.append(f"{missed:.1f} % of controller rounds missed")
    return ", ".join(why) or None
