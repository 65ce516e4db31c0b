"""`colorgrid dispatch`: publish a signed goal schedule for one control group (cloud/dispatch.py).

    colorgrid dispatch --broker mqtt://127.0.0.1:1883 --group g0 --point 0:40 --point 300:35 \\
        --valid-for-s 900 --hmac-key-file vpp.key --key-id vpp

Points are `T_S:KW` (seconds from now, or from --start-ms) or a CSV `t_s,goal_kw` (--schedule);
the message is retained (a controller that restarts picks it up) and QoS 1.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

HELP = "publish a signed goal schedule (dispatch) for a control group to the controller"


class CommandError(ValueError):
    """Bad command-line value (message names the flag)."""


def add_arguments(parser) -> None:
    from colorgrid.args import existing_file, non_negative_int, positive_float
    from colorgrid.results import add_out_argument

    parser.add_argument("--broker", required=True, help="mqtt://host[:port]")
    parser.add_argument("--group", required=True, help="control group the schedule is for")
    parser.add_argument("--point", action="append", default=[], metavar="T_S:KW",
                        help="one schedule point: goal KW (total enabled kW) from T_S seconds on (repeatable)")
    parser.add_argument("--schedule", type=existing_file, default=None, help="CSV with columns t_s,goal_kw (instead of --point)")
    parser.add_argument("--valid-for-s", type=positive_float, default=900.0,
                        help="the schedule ends this long after its last point (default 900)")
    parser.add_argument("--start-ms", type=non_negative_int, default=None,
                        help="UTC epoch ms the point times count from (default: now on --clock)")
    parser.add_argument("--clock", default=None, help="SPEED@ORIGIN_MS shared with an accelerated controller")
    parser.add_argument("--dispatch-id", type=non_negative_int, default=None,
                        help="increasing id per group (default: the issue time in ms)")
    parser.add_argument("--hmac-key-file", required=True, type=existing_file,
                        help="signing key: hex text, or JSON {key_id: hex} (with --key-id)")
    parser.add_argument("--key-id", default="dispatch", help="key id named in the message (default dispatch)")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", type=existing_file, default=None)
    add_out_argument(parser)


def read_points(args) -> list[tuple[float, float]]:
    """[(t_s, goal_kw)] from --point or --schedule."""
    if bool(args.point) == bool(args.schedule):
        raise CommandError("--point/--schedule: give points with one of them")
    pts: list[tuple[float, float]] = []
    try:
        if args.schedule:
            with Path(args.schedule).open(newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or not {"t_s", "goal_kw"} <= set(reader.fieldnames):
                    raise CommandError(f"--schedule: {args.schedule}: needs columns t_s,goal_kw")
                pts = [(float(r["t_s"]), float(r["goal_kw"])) for r in reader]
        else:
            for text in args.point:
                t_s, sep, kw = text.partition(":")
                if not sep:
                    raise CommandError(f"--point: expected T_S:KW, got {text!r}")
                pts.append((float(t_s), float(kw)))
    except CommandError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"--point/--schedule: {exc}") from None
    return pts


def build_payload(args, now_ms: int) -> tuple[bytes, dict]:
    from cloud.dispatch import DispatchError, make_dispatch
    from cloud.config import ConfigError, read_key

    start_ms = args.start_ms if args.start_ms is not None else now_ms
    pts = [(start_ms + int(round(t_s * 1000)), kw) for t_s, kw in read_points(args)]
    if not pts:
        raise CommandError("--point/--schedule: no points")
    if not args.valid_for_s > 0:
        raise CommandError("--valid-for-s: must be > 0")
    try:
        key_id, key = read_key(args.hmac_key_file, args.key_id)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    did = args.dispatch_id if args.dispatch_id is not None else now_ms
    until = pts[-1][0] + int(round(args.valid_for_s * 1000))
    try:
        payload = make_dispatch(args.group, did, pts, now_ms, until, key_id, key)
    except DispatchError as exc:
        raise CommandError(f"dispatch: {exc}") from None
    return payload, {"dispatch_id": did, "issued_ts_ms": now_ms, "valid_until_ts_ms": until,
                     "points": pts, "key_id": key_id}


def run(args) -> int:
    from cloud.clock import ClockError, SimClock
    from cloud.dispatch import PublishError, publish_dispatch
    from cloud.service import ServiceError
    from colorgrid.results import RunOutput
    from edge_agent import topics

    try:
        clock = SimClock.from_spec(args.clock) if args.clock else SimClock()
        payload, info = build_payload(args, clock.now_ms())
        password = Path(args.password_file).read_text().strip() if args.password_file else None
        publish_dispatch(args.broker, args.group, payload, args.username, password)
    except PublishError as exc:
        print(f"colorgrid dispatch: error: argument --broker: {exc}", file=sys.stderr)
        return 2
    except (CommandError, ClockError, ServiceError, OSError, topics.TopicError) as exc:
        print(f"colorgrid dispatch: error: {exc}", file=sys.stderr)
        return 2
    out = RunOutput(args.out, "dispatch", {k: v for k, v in vars(args).items() if k != "password_file"})
    out.write_csv("dispatch.csv", ["ts_ms", "goal_kw"], info["points"])
    out.figure("dispatch_id", info["dispatch_id"])
    out.figure("points", len(info["points"]))
    out.figure("issued_ts_ms", info["issued_ts_ms"], "ms")
    out.figure("valid_until_ts_ms", info["valid_until_ts_ms"], "ms")
    out.finish()
    print(f"dispatch {info['dispatch_id']} for group {args.group}: {len(info['points'])} points, "
          f"valid until {info['valid_until_ts_ms']} ms")
    return 0
