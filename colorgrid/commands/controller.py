"""`colorgrid controller`: the cloud controller service over MQTT (see cloud/README.md)."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

HELP = "run the cloud controller service: aggregate gateway reports, publish signed control vectors"

ROUNDS_COLUMNS_FIXED = ["t_s", "round_id", "group", "goal_kw", "goal_source", "law_goal_kw", "ramped",
                        "measured_enabled_kw", "saturated", "n_live", "n_fresh", "n_missing", "n_fail_safe",
                        "n_outliers", "outliers"]


def add_common(parser) -> None:
    """Flags shared by controller and demo."""
    from colorgrid.args import positive_float

    parser.add_argument("--goal", default="regulation",
                        help="constant:KW | file:PATH (CSV t_s,goal_kw) | regulation[:BASE:AMP] with BASE/AMP "
                             "in kW, or in %% of the group's demand like 50%%:15%% (default regulation = 50%%:15%%)"
                             " | dispatch[:FALLBACK]: signed schedules on colorgrid/v1/dispatch/GROUP "
                             "(needs --dispatch-key-file); FALLBACK (any of the above; default: no shedding) "
                             "where none is in force")
    parser.add_argument("--round-s", type=positive_float, default=2.0, help="control round length, s (default 2)")
    parser.add_argument("--speed", type=positive_float, default=1.0,
                        help="clock acceleration: simulated seconds per wall second (default 1 = real time)")
    parser.add_argument("--db", default=None,
                        help="SQLite registry + command log (default: in memory; a file survives restarts)")
    parser.add_argument("--key-id", default="k1", help="HMAC key id named in every vector (default k1)")


def add_arguments(parser) -> None:
    from colorgrid.args import existing_file, float_range, fraction, positive_float
    from colorgrid.results import add_out_argument

    parser.add_argument("--broker", required=True, help="mqtt://host[:port]")
    add_common(parser)
    parser.add_argument("--hmac-key-file", required=True, type=existing_file,
                        help="file holding the HMAC-SHA256 key: hex text, or JSON {key_id: hex}")
    parser.add_argument("--dispatch-key-file", default=None, type=existing_file,
                        help="keys that may sign dispatches (--goal dispatch): JSON {key_id: hex}, or hex "
                             "text for key id --dispatch-key-id")
    parser.add_argument("--dispatch-key-id", default="dispatch", help="key id of a hex --dispatch-key-file")
    parser.add_argument("--controller-id", default="ctl1", help="controller id (client id ctl-ID)")
    parser.add_argument("--clock", default=None,
                        help="SPEED@ORIGIN_MS shared with an accelerated fleet (overrides --speed)")
    parser.add_argument("--sample-fraction", type=fraction, default=1.0,
                        help="use only this stable fraction of gateways' reports, scaled up (default 1)")
    parser.add_argument("--ramp-pct-per-round", type=float_range(0.0, 100.0), default=3.0,
                        help="recovery ramp: after a (re)start or a fail-safe period move each group's "
                             "enabled demand at most this %% of its demand per round towards the goal "
                             "(default 3; 0 = step at once)")
    parser.add_argument("--enrollment", default=None, metavar="FILE", type=existing_file,
                        help="JSON enrollment list {\"gateways\": {ID: {\"keys\": {KEY_ID: HEX}, \"max_kw\": KW, "
                             "\"group\": G}}}: only these gateways are heard; those with keys must sign "
                             "their reports (default: every gateway id is heard)")
    parser.add_argument("--max-device-kw", type=positive_float, default=None,
                        help="largest kW a birth may declare for one device (default 100, or the "
                             "enrollment's max_device_kw)")
    parser.add_argument("--max-gateway-kw", type=positive_float, default=None,
                        help="largest kW a birth may declare in all, for gateways without an enrollment max_kw")
    parser.add_argument("--regions", default=None, metavar="FILE", type=existing_file,
                        help="region map JSON {\"regions\": {R: {\"prefixes\": [...], \"gateways\": [...]}}}: "
                             "take the signed per-region sums of `colorgrid aggregator` instead of gateway "
                             "states for the gateways in a region (docs/scale-out.md; needs --region-key-file)")
    parser.add_argument("--region-key-file", default=None, type=existing_file,
                        help="keys the aggregators sign region sums with: JSON {key_id: hex}, or hex text "
                             "for key id 'region' (keep them apart from --hmac-key-file)")
    parser.add_argument("--duration-s", type=positive_float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", default=None, type=existing_file)
    parser.add_argument("--log-level", default="INFO")
    add_out_argument(parser)


def core_from_args(args, key_id: str, key: bytes, start_ms: int, controller_id: str = "ctl1",
                   policy=None, ttl_ms: int | None = None):
    """The ControllerCore the controller/demo flags describe (cloud.config does the wiring);
    `policy` (a cloud.enrollment.GatewayPolicy) replaces the one the enrollment flags give."""
    from cloud.config import ConfigError, build_core, gateway_policy, parse_goal, read_keys, region_view

    dispatch_keys = None
    if getattr(args, "dispatch_key_file", None):
        dispatch_keys = read_keys(args.dispatch_key_file, args.dispatch_key_id)
    if policy is None:
        policy = gateway_policy(getattr(args, "enrollment", None), getattr(args, "max_device_kw", None),
                                getattr(args, "max_gateway_kw", None))
    regions = None
    if getattr(args, "regions", None) or getattr(args, "region_key_file", None):
        if not (args.regions and args.region_key_file):
            raise ConfigError("--regions: needs --region-key-file too (and the other way round)")
        regions = region_view(args.regions, args.region_key_file, round_s=args.round_s)
    core = build_core(parse_goal(args.goal, start_ms, dispatch_keys), key_id, key, start_ms,
                      controller_id, round_s=args.round_s, db=args.db,
                      sample_fraction=getattr(args, "sample_fraction", 1.0),
                      ramp_pct_per_round=getattr(args, "ramp_pct_per_round", 3.0), policy=policy,
                      regions=regions)
    if ttl_ms is not None:
        core.ttl_ms = int(ttl_ms)
    return core


SUMMARY_EVERY_ROUNDS = 30   # summary.json ("complete": false) rewritten this often while running


def rounds_columns(k: int) -> list[str]:
    return (ROUNDS_COLUMNS_FIXED + [f"enabled_t{i}_kw" for i in range(k)]
            + [f"p_on_t{i}" for i in range(k)] + [f"p_off_t{i}" for i in range(k)])


def _cell(value) -> str:
    from colorgrid.results import clean_value

    value = clean_value(value, "rounds.csv")
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


class RoundsStream:
    """rounds.csv written as the controller runs: one row per (round, group), the header once,
    appended and flushed after every round, so a crash (kill -9) loses at most the round being
    written. Rows leave `core.records` once on disk. A file already there with the same header
    (a restart on the same --out) is continued; anything else is replaced."""

    def __init__(self, path: Path | None, start_ms: int) -> None:
        self.path, self.start_ms = path, start_ms
        self.k: int | None = None
        self.rows = 0
        self._fh = None

    def _open(self, k: int) -> None:
        import csv

        self.k = k
        header = ",".join(rounds_columns(k))
        keep = False
        if self.path.exists():
            with self.path.open() as fh:
                keep = fh.readline().rstrip("\n") == header
        self._fh = self.path.open("a" if keep else "w", newline="")
        self._csv = csv.writer(self._fh, lineterminator="\n")
        if not keep:
            self._csv.writerow(rounds_columns(k))

    def write(self, core) -> None:
        if self.path is None:
            core.records.clear()
            return
        for r in core.records:
            if self._fh is None:
                self._open(len(r.tier_enabled_kw))
            if len(r.tier_enabled_kw) != self.k:
                continue
            row = ([(r.t_ms - self.start_ms) / 1000.0, r.round_id, r.group, r.goal_kw, r.goal_source,
                    r.law_goal_kw, r.ramped, r.measured_kw, r.saturated, r.n_live, r.n_fresh, r.n_missing,
                    r.n_fail_safe, r.n_outliers, ";".join(r.outliers)]
                   + list(r.tier_enabled_kw) + list(r.p_on) + list(r.p_off))
            self._csv.writerow([_cell(v) for v in row])
            self.rows += 1
        core.records.clear()
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _summary_output(out_dir, params):
    """A RunOutput whose summary.json carries "complete" (false until a clean stop) and is
    replaced atomically (a crash never leaves half a file)."""
    import json
    import os

    from colorgrid.results import RunOutput

    class ControllerOutput(RunOutput):
        complete = False

        def summary(self, wall_time_s=None):
            data = super().summary(wall_time_s)
            data["complete"] = self.complete
            return data

        def finish(self):
            data = self.summary()
            if self.out_dir is not None:
                tmp = self.out_dir / "summary.json.tmp"
                tmp.write_text(json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n")
                os.replace(tmp, self.out_dir / "summary.json")
            return data

    return ControllerOutput(out_dir, "controller", params)


def _figures(out, core, service) -> None:
    out.figure("rounds", service.rounds)
    out.figure("missed_rounds", service.missed_rounds)
    out.figure("messages_received", core.received)
    out.figure("messages_rejected", sum(core.rejected.values()))
    out.figure("vectors_published", core.published)
    out.figure("gateways_known", len(core.aggregator.sessions))
    out.figure("vectors_rejected_by_gateways", sum(core.vectors_rejected_by_gateways.values()))
    out.figure("vectors_rejected_by_gateways_by_reason", dict(sorted(core.vectors_rejected_by_gateways.items())))
    out.figure("recovery_ramps", sum(step.recoveries for step in core._rounds.values()))
    out.figure("status_reasserted", core.status_reasserted)
    if core.dispatches is not None:
        out.figure("dispatches_accepted", core.dispatches.accepted)
        out.figure("dispatches_rejected", sum(core.dispatches.rejected.values()))


def run(args) -> int:
    from cloud.clock import SimClock
    from cloud.config import read_key
    from cloud.service import ControllerService, ServiceError, parse_broker_url
    from colorgrid.args import error

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_broker_url(args.broker)
        key_id, key = read_key(args.hmac_key_file, args.key_id)
        clock = SimClock.from_spec(args.clock) if args.clock else SimClock(args.speed)
        core = core_from_args(args, key_id, key, clock.origin_ms, args.controller_id)
        password = Path(args.password_file).read_text().strip() if args.password_file else None
    except (ValueError, OSError, ServiceError) as exc:  # one line on stderr, exit 2 (colorgrid.args)
        return error("colorgrid controller", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    service = ControllerService(core, host, port, clock, username=args.username, password=password)
    out = _summary_output(args.out, {k: v for k, v in vars(args).items() if k != "password_file"})
    stream = RoundsStream(out.path("rounds.csv"), clock.origin_ms)
    _figures(out, core, service)
    out.finish()                                  # "complete": false from the start

    def on_round(n: int, _ms: float) -> None:
        stream.write(core)
        if n % SUMMARY_EVERY_ROUNDS == 0:
            _figures(out, core, service)
            out.finish()

    service.on_round = on_round

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration_s:
            loop.call_later(args.duration_s, stop.set)
        await service.run(stop)

    asyncio.run(main())
    stream.write(core)
    stream.close()
    _figures(out, core, service)
    out.figure("rounds_csv_rows", stream.rows)
    out.complete = True
    out.finish()
    print(f"controller stopped: {service.rounds} rounds, {service.missed_rounds} missed, "
          f"{core.received} messages in, {sum(core.rejected.values())} rejected, {core.published} out, "
          f"{sum(core.vectors_rejected_by_gateways.values())} vectors rejected by gateways")
    core.registry.close()
    return 0
