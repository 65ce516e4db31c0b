"""`colorgrid vpp ven`: the VPP as an OpenADR 2.0b VEN (market/vpp/openadr; extra `[openadr]`).

    colorgrid vpp ven --vtn-url http://vtn:8080/OpenADR2/Simple/2.0b --ven-name vpp-1 \
        --portfolio portfolio.toml --db vpp.db [--rounds out/rounds.csv --origin-ms MS] \
        [--broker mqtt://127.0.0.1:1883 --hmac-key-file vpp.key] [--duration-s S] --out ven/

Registers with the VTN, decides every LOAD_DISPATCH event from the yield statistics (P90 flexibility)
and the contracts, publishes the accepted goals as signed dispatch schedules (with --broker), reports
the achieved kW per location from the controller's rounds.csv (with --rounds), and on exit
(--duration-s, Ctrl-C or SIGTERM) writes events.csv, goals.csv, reports.csv and summary.json, and
adds the accepted reductions to the yield store as dispatch records (the response ratio).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from urllib.parse import urlparse

EVENT_COLUMNS = ["received_ms", "event_id", "modification_number", "status", "signal_type", "targets", "start_ms",
                 "end_ms", "intervals", "ramp_up_ms", "opt", "reason", "requested_kw_max", "flexible_kw_min"]
REPORT_COLUMNS = ["ts_ms", "location", "achieved_kw", "goal_kw", "source"]


def add_arguments(sub) -> None:
    from colorgrid.args import existing_file, fraction, non_negative_int, positive_float
    from colorgrid.results import add_out_argument

    ven = sub.add_parser("ven", help="OpenADR 2.0b VEN: VTN events -> goals (opt-in from flexibility), reports back")
    ven.add_argument("--vtn-url", required=True, metavar="URL",
                     help="the VTN's OpenADR endpoint, e.g. http://127.0.0.1:8080/OpenADR2/Simple/2.0b")
    ven.add_argument("--ven-name", required=True, metavar="N", help="the VEN name the VTN registers")
    ven.add_argument("--ven-id", default=None, help="a VEN id assigned earlier by the VTN (default: the VTN assigns)")
    ven.add_argument("--portfolio", required=True, type=existing_file, metavar="P.toml|P.json", help="the VPP's portfolio")
    ven.add_argument("--db", required=True, type=existing_file, metavar="vpp.db", help="SQLite yield store (vpp ingest)")
    ven.add_argument("--confidence", type=fraction, default=0.9, help="flexibility at this confidence (0.9: P90)")
    ven.add_argument("--max-kw", type=positive_float, default=None,
                     help="the VEN's contract limit with the VTN: opt out of larger reductions")
    ven.add_argument("--rounds", default=None, metavar="CSV",
                     help="the controller's rounds.csv (growing) for the achieved-kW reports")
    ven.add_argument("--origin-ms", type=non_negative_int, default=0, help="UTC epoch ms of rounds.csv's t_s = 0")
    ven.add_argument("--group-map", default=None, metavar="G=LOC,…", help="group ids of rounds.csv that are not location ids")
    ven.add_argument("--report-s", type=positive_float, default=10.0, help="report sampling period, s (default 10)")
    ven.add_argument("--broker", default=None, metavar="URL", help="publish accepted goals as signed dispatches")
    ven.add_argument("--hmac-key-file", type=existing_file, default=None, metavar="F", help="dispatch signing key (hex)")
    ven.add_argument("--key-id", default="vpp", help="key id the controller knows the key by (default vpp)")
    ven.add_argument("--duration-s", type=positive_float, default=None, help="stop after this long (default: Ctrl-C)")
    add_out_argument(ven, required=True)


def _check_url(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"expected http(s)://host[:port]/path, got {url!r}"
    try:
        parsed.port
    except ValueError:
        return f"bad port in {url!r}"
    return None


def run(args, error, one_line, portfolio_of, group_map) -> int:
    prog = "colorgrid vpp ven"
    bad = _check_url(args.vtn_url)
    if bad:
        return error(prog, f"argument --vtn-url: {bad}")
    if not args.ven_name.strip():
        return error(prog, "argument --ven-name: empty")
    if args.broker and not args.hmac_key_file:
        return error(prog, "argument --hmac-key-file: needed with --broker (dispatches are signed)")
    from market.vpp.openadr.client import OpenadrMissing, require_openleadr

    try:
        require_openleadr()
    except OpenadrMissing as exc:
        return error(prog, f"{exc}")
    portfolio, err = portfolio_of(prog, args.portfolio)
    if err is not None:
        return err
    try:
        groups = group_map(args.group_map)
    except ValueError as exc:
        return error(prog, f"argument --group-map: {exc}")
    try:
        parts = _build(args, portfolio, groups)
    except _Bad as exc:
        return error(prog, f"argument {exc}")
    return asyncio.run(_serve(args, prog, portfolio, error, one_line, *parts))


class _Bad(ValueError):
    pass


def _build(args, portfolio, groups):
    from cloud.config import ConfigError, read_key
    from cloud.goals import ConstantGoal, PerGroupGoal
    from market.vpp import SqliteYieldStore, YieldStats
    from market.vpp.openadr import (AdrGoal, FlexibilityMapper, MqttPublisher, RoundsFleetState, Signer,
                                    StatsFlexibility, Ven)
    from market.vpp.yield_stats import TelemetryError

    try:
        stats = YieldStats(SqliteYieldStore(args.db), portfolio.tiers)
        stats.response_ratio(portfolio.locations()[0]) if portfolio.locations() else None   # readable store?
    except Exception as exc:  # sqlite3.DatabaseError: not a yield store
        raise _Bad(f"--db: {' '.join(str(exc).split())}") from None
    signer = publisher = None
    if args.broker:
        try:
            key_id, key = read_key(args.hmac_key_file, args.key_id)
        except ConfigError as exc:
            raise _Bad(" ".join(str(exc).split())) from None
        signer, publisher = Signer(key_id, key), MqttPublisher(args.broker)
    fleet = None
    if args.rounds:
        fleet = RoundsFleetState(args.rounds, portfolio.tiers, args.origin_ms, groups)
        try:
            fleet.mean_kw("-", 0, 1)
        except (TelemetryError, UnicodeDecodeError) as exc:
            raise _Bad(f"--rounds: {' '.join(str(exc).split())}") from None
    no_shed = {loc: portfolio.kw(loc) for loc in portfolio.locations()}
    goal = AdrGoal(no_shed, fallback=PerGroupGoal({loc: ConstantGoal(kw) for loc, kw in no_shed.items()}))
    mapper = FlexibilityMapper(StatsFlexibility(portfolio, stats, args.confidence), max_kw=args.max_kw)
    ven = Ven(mapper, goal, fleet=fleet, publisher=publisher, signer=signer, tiers=portfolio.sheddable_tiers)
    return ven, goal, stats


def _record_dispatches(stats, goal) -> int:
    """The accepted events' reductions as dispatch records of the yield store, so that a later
    `vpp ingest` of the rounds counts their delivery in the response ratio (as for LEM dispatches)."""
    from market.vpp import DispatchRecord

    records = [DispatchRecord(g.location, g.start_ms, g.end_ms, g.baseline_kw, g.goal_kw)
               for d in goal.decisions() for g in d.goals if g.reduction_kw > 0]
    for r in records:
        stats.record_dispatch(r)
    return len(records)


async def _serve(args, prog, portfolio, error, one_line, ven, goal, stats) -> int:
    from colorgrid.results import RunOutput
    from market.vpp.openadr.client import OpenleadrVen, VenError

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("ven: %(message)s"))
    log = logging.getLogger("colorgrid.vpp.ven")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    client = OpenleadrVen(ven, args.vtn_url, args.ven_name, portfolio.locations(), args.report_s, args.ven_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await client.start()
        except VenError as exc:
            return error(prog, f"argument --vtn-url: {one_line(exc)}")
        print(f"registered with {args.vtn_url} as {client.client.ven_id} ({len(portfolio.locations())} location(s)); "
              f"{'until ' + format(args.duration_s, 'g') + ' s' if args.duration_s else 'Ctrl-C to stop'}")
        try:
            await asyncio.wait_for(stop.wait(), args.duration_s)
        except asyncio.TimeoutError:
            pass
    finally:
        await client.stop()
        log.removeHandler(handler)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    out = RunOutput(args.out, "vpp ven", {k: v for k, v in vars(args).items() if k not in ("out", "action")})
    rec = ven.record
    out.write_csv("events.csv", EVENT_COLUMNS, [[e[c] for c in EVENT_COLUMNS] for e in rec.events])
    goal_cols = ["event_id", "modification_number", "location", "start_ms", "end_ms", "baseline_kw", "reduction_kw",
                 "goal_kw", *[f"{t}_kw" for t in portfolio.sheddable_tiers], "achieved_kw"]
    out.write_csv("goals.csv", goal_cols, [[g.get(c) for c in goal_cols] for g in ven.achieved_per_goal()])
    out.write_csv("reports.csv", REPORT_COLUMNS, [[r[c] for c in REPORT_COLUMNS] for r in rec.reports])
    opted_in = sum(e["opt"] == "optIn" for e in rec.events)
    out.figure("dispatch_records", _record_dispatches(stats, goal))
    out.figure("events", len(rec.events))
    out.figure("opted_in", opted_in)
    out.figure("opted_out", len(rec.events) - opted_in)
    out.figure("reports_sent", client.reports_sent)
    out.figure("published", rec.published)
    out.figure("publish_errors", list(rec.publish_errors))
    # goals.csv keeps every opted-in decision (an update adds rows); the energy counts those in force
    out.figure("reduction_kwh", sum(g.reduction_kw * (g.end_ms - g.start_ms) / 3.6e6
                                    for d in goal.decisions() for g in d.goals), "kWh")
    out.finish()
    print(f"{len(rec.events)} event(s): {opted_in} opted in, {len(rec.events) - opted_in} opted out; "
          f"{client.reports_sent} report value(s) sent; {rec.published} dispatch(es) published")
    print(f"wrote events.csv, goals.csv, reports.csv, summary.json to {out.out_dir}")
    return 0
