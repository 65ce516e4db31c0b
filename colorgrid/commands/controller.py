"""`colorgrid controller`: the cloud controller service over MQTT (see cloud/README.md)."""
from __future__ import annotations

import asyncio
import binascii
import json
import logging
import signal
from pathlib import Path

HELP = "run the cloud controller service: aggregate gateway reports, publish signed control vectors"

ROUNDS_COLUMNS_FIXED = ["t_s", "round_id", "group", "goal_kw", "goal_source", "measured_enabled_kw",
                        "saturated", "n_live", "n_fresh", "n_missing", "n_fail_safe"]


class CommandError(ValueError):
    """Bad command-line value (message names the flag)."""


def add_common(parser) -> None:
    """Flags shared by controller and demo."""
    parser.add_argument("--goal", default="regulation",
                        help="constant:KW | file:PATH (CSV t_s,goal_kw) | regulation[:BASE:AMP] with BASE/AMP "
                             "in kW, or in %% of the group's demand like 50%%:15%% (default regulation = 50%%:15%%)"
                             " | dispatch[:FALLBACK]: signed schedules on colorgrid/v1/dispatch/GROUP "
                             "(needs --dispatch-key-file); FALLBACK (any of the above; default: no shedding) "
                             "where none is in force")
    parser.add_argument("--round-s", type=float, default=2.0, help="control round length, s (default 2)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="clock acceleration: simulated seconds per wall second (default 1 = real time)")
    parser.add_argument("--db", default=None,
                        help="SQLite registry + command log (default: in memory; a file survives restarts)")
    parser.add_argument("--key-id", default="k1", help="HMAC key id named in every vector (default k1)")


def add_arguments(parser) -> None:
    from colorgrid.results import add_out_argument

    parser.add_argument("--broker", required=True, help="mqtt://host[:port]")
    add_common(parser)
    parser.add_argument("--hmac-key-file", required=True,
                        help="file holding the HMAC-SHA256 key: hex text, or JSON {key_id: hex}")
    parser.add_argument("--dispatch-key-file", default=None,
                        help="keys that may sign dispatches (--goal dispatch): JSON {key_id: hex}, or hex "
                             "text for key id --dispatch-key-id")
    parser.add_argument("--dispatch-key-id", default="dispatch", help="key id of a hex --dispatch-key-file")
    parser.add_argument("--controller-id", default="ctl1", help="controller id (client id ctl-ID)")
    parser.add_argument("--clock", default=None,
                        help="SPEED@ORIGIN_MS shared with an accelerated fleet (overrides --speed)")
    parser.add_argument("--sample-fraction", type=float, default=1.0,
                        help="use only this stable fraction of gateways' reports, scaled up (default 1)")
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", default=None)
    parser.add_argument("--log-level", default="INFO")
    add_out_argument(parser)


def read_key(path: str, key_id: str, flag: str = "--hmac-key-file") -> tuple[str, bytes]:
    """(key_id, key bytes) from hex text or a JSON {key_id: hex} file (`flag` names it in errors)."""
    text = Path(path).read_text().strip()
    try:
        if text.startswith("{"):
            table = json.loads(text)
            if key_id not in table:
                key_id = sorted(table)[0]
            text = table[key_id]
        key = binascii.unhexlify(text.strip())
    except (ValueError, TypeError, AttributeError, binascii.Error, IndexError) as exc:
        raise CommandError(f"{flag}: {path}: not hex or JSON {{key_id: hex}} ({exc})") from None
    if len(key) < 16:
        raise CommandError(f"{flag}: {path}: key shorter than 16 bytes")
    return key_id, key


def read_keys(path: str, key_id: str, flag: str = "--dispatch-key-file") -> dict:
    """Every key of a JSON {key_id: hex} file, or {key_id: key} for hex text (each as read_key)."""
    first, key = read_key(path, key_id, flag)
    text = Path(path).read_text().strip()
    if not text.startswith("{"):
        return {first: key}
    return {kid: read_key(path, kid, flag)[1] for kid in sorted(json.loads(text))}


def parse_goal(spec: str, start_ms: int, dispatch_keys: dict | None = None):
    """--goal text → a GoalSchedule (or FractionOfDemand for %-valued regulation)."""
    from cloud.goals import ConstantGoal, FileGoal, RegulationGoal
    from cloud.rounds import FractionOfDemand

    kind, _, rest = spec.partition(":")
    if kind == "dispatch":
        from cloud.dispatch import DispatchGoal
        if not dispatch_keys:
            raise CommandError("--dispatch-key-file: required with --goal dispatch")
        fallback = parse_goal(rest, start_ms) if rest else FractionOfDemand(ConstantGoal(1.0))
        return DispatchGoal(dispatch_keys, fallback=fallback)
    try:
        if kind == "constant":
            return ConstantGoal(float(rest))
        if kind == "file":
            return FileGoal(rest, start_ms=start_ms)
        if kind == "regulation":
            base, _, amp = (rest or "50%:15%").partition(":")
            amp = amp or "15%"
            if base.endswith("%") != amp.endswith("%"):
                raise CommandError("--goal: regulation BASE and AMP must both be kW or both be %")
            if base.endswith("%"):
                return FractionOfDemand(RegulationGoal(float(base[:-1]) / 100, float(amp[:-1]) / 100,
                                                       start_ms=start_ms))
            return RegulationGoal(float(base), float(amp), start_ms=start_ms)
    except (ValueError, OSError) as exc:
        raise CommandError(f"--goal: {spec!r}: {exc}") from None
    raise CommandError(f"--goal: expected constant:KW, file:PATH, regulation[:BASE:AMP] or "
                       f"dispatch[:FALLBACK], got {spec!r}")


def build_core(args, key_id: str, key: bytes, start_ms: int, controller_id: str = "ctl1"):
    from cloud.aggregator import Aggregator
    from cloud.control_law import ControlParams
    from cloud.registry import open_registry
    from cloud.rounds import ControllerCore

    round_ms = int(round(args.round_s * 1000))
    if round_ms < 50:
        raise CommandError("--round-s: must be >= 0.05")
    agg = Aggregator(stale_after_ms=int(1.5 * round_ms), max_carry_ms=5 * round_ms,
                     rebirth_holdoff_ms=5 * round_ms, sample_fraction=getattr(args, "sample_fraction", 1.0))
    dispatch_keys = None
    if getattr(args, "dispatch_key_file", None):
        dispatch_keys = read_keys(args.dispatch_key_file, args.dispatch_key_id)
    return ControllerCore(controller_id, parse_goal(args.goal, start_ms, dispatch_keys), key_id, key,
                          registry=open_registry(args.db), aggregator=agg,
                          params=ControlParams(round_s=args.round_s), round_ms=round_ms)


def write_rounds(out, core, start_ms: int) -> None:
    """rounds.csv: one row per (round, group) the controller ran."""
    if not core.records:
        return
    k = len(core.records[0].tier_enabled_kw)
    cols = (ROUNDS_COLUMNS_FIXED + [f"enabled_t{i}_kw" for i in range(k)]
            + [f"p_on_t{i}" for i in range(k)] + [f"p_off_t{i}" for i in range(k)])
    rows = []
    for r in core.records:
        if len(r.tier_enabled_kw) != k:
            continue
        rows.append([(r.t_ms - start_ms) / 1000.0, r.round_id, r.group, r.goal_kw, r.goal_source, r.measured_kw,
                     r.saturated, r.n_live, r.n_fresh, r.n_missing, r.n_fail_safe]
                    + list(r.tier_enabled_kw) + list(r.p_on) + list(r.p_off))
    out.write_csv("rounds.csv", cols, rows)


def run(args) -> int:
    from cloud.clock import SimClock
    from cloud.service import ControllerService, ServiceError, parse_broker_url
    from colorgrid.results import RunOutput

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_broker_url(args.broker)
        key_id, key = read_key(args.hmac_key_file, args.key_id)
        clock = SimClock.from_spec(args.clock) if args.clock else SimClock(args.speed)
        core = build_core(args, key_id, key, clock.origin_ms, args.controller_id)
    except (ValueError, OSError, ServiceError) as exc:
        print(f"colorgrid controller: {exc}")
        return 2
    password = Path(args.password_file).read_text().strip() if args.password_file else None
    service = ControllerService(core, host, port, clock, username=args.username, password=password)
    out = RunOutput(args.out, "controller", {k: v for k, v in vars(args).items() if k != "password_file"})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration_s:
            loop.call_later(args.duration_s, stop.set)
        await service.run(stop)

    asyncio.run(main())
    write_rounds(out, core, clock.origin_ms)
    out.figure("rounds", service.rounds)
    out.figure("missed_rounds", service.missed_rounds)
    out.figure("messages_received", core.received)
    out.figure("messages_rejected", sum(core.rejected.values()))
    out.figure("vectors_published", core.published)
    out.figure("gateways_known", len(core.aggregator.sessions))
    if hasattr(core.goal, "offer"):
        out.figure("dispatches_accepted", core.goal.accepted)
        out.figure("dispatches_rejected", sum(core.goal.rejected.values()))
    out.finish()
    print(f"controller stopped: {service.rounds} rounds, {service.missed_rounds} missed, "
          f"{core.received} messages in, {sum(core.rejected.values())} rejected, {core.published} out")
    core.registry.close()
    return 0
