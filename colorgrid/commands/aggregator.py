"""`colorgrid aggregator`: a regional aggregator service (cloud.region, docs/scale-out.md)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

HELP = "run a regional aggregator: sum its gateways' reports into one signed region sum per round"


def add_arguments(parser) -> None:
    parser.add_argument("--region", required=True, help="region id this aggregator serves")
    parser.add_argument("--broker", required=True, help="mqtt://host[:port] (MQTT 5)")
    parser.add_argument("--hmac-key-file", required=True,
                        help="key that signs the region sums: hex text, or JSON {key_id: hex} "
                             "(the controller's --region-key-file must hold it)")
    parser.add_argument("--key-id", default="region", help="key id of a hex --hmac-key-file (default region)")
    parser.add_argument("--regions", default=None, metavar="FILE",
                        help="JSON {\"regions\": {R: {\"prefixes\": [...], \"gateways\": [...]}}} "
                             "(the same file as the controller's)")
    parser.add_argument("--prefix", action="append", default=None,
                        help="gateway id prefix of this region (repeatable; instead of --regions)")
    parser.add_argument("--shared", action="store_true",
                        help="read states through the MQTT 5 shared subscription $share/REGION/... so "
                             "several aggregators split the region")
    parser.add_argument("--aggregator-id", default=None, help="this process's id (default agg-PID)")
    parser.add_argument("--round-s", type=float, default=2.0, help="round length, s (default 2)")
    parser.add_argument("--publish-phase", type=float, default=0.85,
                        help="tick at this fraction of each round (default 0.85)")
    parser.add_argument("--clock", default=None, help="SPEED@ORIGIN_MS shared with the controller")
    parser.add_argument("--enrollment", default=None, metavar="FILE",
                        help="the controller's enrollment list: only these gateways are summed, "
                             "signed reports verified")
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this many wall seconds")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", default=None)
    parser.add_argument("--log-level", default="INFO")


def build(args):
    """(RegionCore, host, port, clock) from the flags; ValueError/OSError name the flag."""
    from cloud.clock import SimClock
    from cloud.config import ConfigError, gateway_policy, read_key
    from cloud.region import RegionCore, RegionError, RegionMap
    from cloud.service import parse_broker_url
    from edge_agent.codec import CodecError
    from edge_agent.topics import valid_id

    host, port = parse_broker_url(args.broker)
    key_id, key = read_key(args.hmac_key_file, args.key_id)
    if not valid_id(args.region):
        raise ConfigError(f"--region: invalid id {args.region!r} (1..64 chars of A-Z a-z 0-9 _ . -)")
    if (args.regions is None) == (args.prefix is None):
        raise ConfigError("--regions, --prefix: give exactly one of them")
    try:
        region_map = (RegionMap.from_file(args.regions) if args.regions
                      else RegionMap({args.region: {"prefixes": list(args.prefix)}}))
    except RegionError as exc:
        raise ConfigError(str(exc) if args.regions else f"--prefix: {exc}") from None
    if not args.round_s >= 0.05:
        raise ConfigError("--round-s: must be >= 0.05")
    clock = SimClock.from_spec(args.clock) if args.clock else SimClock()
    try:
        core = RegionCore(args.region, region_map, args.aggregator_id or f"agg-{os.getpid()}", key_id, key,
                          round_ms=int(round(args.round_s * 1000)), shared=args.shared,
                          policy=gateway_policy(args.enrollment))
    except (RegionError, CodecError) as exc:
        field, _, why = str(exc).partition(": ")
        raise ConfigError(f"--{field.replace('_', '-')}: {why}") from None
    return core, host, port, clock


def run(args) -> int:
    from cloud.region_service import RegionService
    from cloud.service import ServiceError

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        core, host, port, clock = build(args)
        password = Path(args.password_file).read_text().strip() if args.password_file else None
        service = RegionService(core, host, port, clock, publish_phase=args.publish_phase,
                                username=args.username, password=password)
    except (ValueError, OSError, ServiceError) as exc:
        print(f"colorgrid aggregator: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration_s:
            loop.call_later(args.duration_s, stop.set)
        await service.run(stop)

    asyncio.run(main())
    print(f"aggregator {core.aggregator_id} of region {core.region} stopped: {service.ticks} ticks, "
          f"{service.missed_ticks} missed, {core.counters['states']} states summed, {service.published} "
          f"sums out, {sum(core.rejected.values())} rejected")
    return 0
