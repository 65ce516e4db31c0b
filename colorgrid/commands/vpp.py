"""`colorgrid vpp ingest|curve|dispatch`: the VPP's three steps around the LEM (market/vpp).

    colorgrid vpp ingest   --portfolio P --db vpp.db --rounds out/rounds.csv [--origin-ms MS]
    colorgrid vpp curve    --portfolio P --db vpp.db [--market market.json] --confidence 0.9 --out curve/
    colorgrid market clear --feeder ieee13 --offers curve/offers.json --out lem/
    colorgrid vpp dispatch --portfolio P --curves curve/curves.json --schedule lem/schedule.csv \
                           --hmac-key-file vpp.key [--broker mqtt://…] --out dispatch/
    colorgrid vpp ven      --vtn-url URL --ven-name N --portfolio P --db vpp.db --out ven/   (colorgrid/commands/vpp_ven.py)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "virtual power plant: ingest fleet telemetry, build the supply curve as LEM offers, dispatch the clearing"
PROG = "colorgrid vpp"
HOUR_MS = 3_600_000


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, fraction, non_negative_int, positive_float
    from colorgrid.results import add_out_argument

    sub = parser.add_subparsers(dest="action", required=True, metavar="ingest|curve|dispatch|ven")
    ing = sub.add_parser("ingest", help="add fleet telemetry to the yield statistics (SQLite)")
    ing.add_argument("--portfolio", required=True, type=existing_file, metavar="P.toml|P.json", help="the VPP's portfolio")
    ing.add_argument("--db", required=True, metavar="vpp.db", help="SQLite yield store (created if missing)")
    src = ing.add_mutually_exclusive_group(required=True)
    src.add_argument("--rounds", type=existing_file, metavar="CSV", help="the controller's rounds.csv")
    src.add_argument("--timeseries", type=existing_file, metavar="CSV", help="colorgrid simulate's timeseries.csv")
    ing.add_argument("--origin-ms", type=non_negative_int, default=0, help="UTC epoch ms of t_s = 0 (default 0)")
    ing.add_argument("--group-map", default=None, metavar="G=LOC,…",
                     help="group ids that are not location ids, e.g. g0=671.1,g1=675.3")
    cur = sub.add_parser("curve", help="supply curves per location·interval, exported as LEM offers (offers.json)")
    cur.add_argument("--portfolio", required=True, type=existing_file, metavar="P.toml|P.json", help="the VPP's portfolio")
    cur.add_argument("--db", required=True, type=existing_file, metavar="vpp.db", help="SQLite yield store (vpp ingest)")
    cur.add_argument("--market", type=existing_file, default=None, metavar="market.json",
                     help="a LEM document to add the VPP's offers to (its ISO prices choose the contract intervals)")
    cur.add_argument("--confidence", type=fraction, default=0.9, help="quantity at this confidence (0.9: P90)")
    cur.add_argument("--intervals", type=count, default=None, help="intervals without --market (default 24)")
    cur.add_argument("--start-ms", type=non_negative_int, default=0, help="UTC epoch ms of interval 0 (default 0)")
    cur.add_argument("--dispatch-at-ms", type=non_negative_int, default=None,
                     help="when the dispatch will be issued (contract notice); default: no notice check")
    add_out_argument(cur, required=True)
    dis = sub.add_parser("dispatch", help="cleared VPP quantities -> signed goal schedules per location (group)")
    dis.add_argument("--portfolio", required=True, type=existing_file, metavar="P.toml|P.json", help="the VPP's portfolio")
    dis.add_argument("--curves", required=True, type=existing_file, metavar="curves.json",
                     help="the curves the offers came from (vpp curve --out DIR: DIR/curves.json)")
    dis.add_argument("--schedule", required=True, type=existing_file, metavar="schedule.csv",
                     help="the LEM's schedule.csv (colorgrid market clear --out DIR)")
    dis.add_argument("--hmac-key-file", required=True, type=existing_file, metavar="F", help="dispatch signing key (hex)")
    dis.add_argument("--key-id", default="vpp", help="key id the controller knows the key by (default vpp)")
    dis.add_argument("--issued-ms", type=non_negative_int, default=None, help="issue time, UTC epoch ms (default now)")
    dis.add_argument("--dispatch-id", type=non_negative_int, default=None, help="dispatch id (default: issued s)")
    dis.add_argument("--broker", default=None, metavar="URL", help="publish each location's schedule (retained, QoS 1)")
    dis.add_argument("--timeout-s", type=positive_float, default=10.0, help="broker timeout per publish (default 10)")
    add_out_argument(dis, required=True)
    from colorgrid.commands import vpp_ven   # the OpenADR VEN (extra [openadr]): its own module

    vpp_ven.add_arguments(sub)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _error(prog: str, message: str) -> int:
    from colorgrid.args import error

    return error(prog, message)


def run(args) -> int:
    if args.action == "ven":
        from colorgrid.commands import vpp_ven

        return vpp_ven.run(args, _error, _one_line, _portfolio, _group_map)
    return {"ingest": _ingest, "curve": _curve, "dispatch": _dispatch}[args.action](args)


def _portfolio(prog: str, path: str):
    from market.vpp import Portfolio, PortfolioError

    try:
        return Portfolio.load(path), None
    except PortfolioError as exc:
        return None, _error(prog, f"argument --portfolio: {_one_line(exc)}")


def _group_map(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        group, eq, loc = part.partition("=")
        if not eq or not group.strip() or not loc.strip():
            raise ValueError(f"expected G=LOC[,G=LOC…], got {part!r}")
        out[group.strip()] = loc.strip()
    return out


def _ingest(args) -> int:
    from market.vpp import SqliteYieldStore, TelemetryError, YieldStats, read_rounds_csv, read_timeseries_csv

    prog = f"{PROG} ingest"
    portfolio, err = _portfolio(prog, args.portfolio)
    if err is not None:
        return err
    try:
        groups = _group_map(args.group_map)
    except ValueError as exc:
        return _error(prog, f"argument --group-map: {exc}")
    flag, path = ("--rounds", args.rounds) if args.rounds else ("--timeseries", args.timeseries)
    reader = read_rounds_csv if args.rounds else read_timeseries_csv
    try:
        rows = reader(path, portfolio.tiers, args.origin_ms, groups)
    except TelemetryError as exc:
        return _error(prog, f"argument {flag}: {_one_line(exc)}")
    except UnicodeDecodeError:
        return _error(prog, f"argument {flag}: {path} is not a text CSV")
    unknown = sorted({r.location for r in rows} - set(portfolio.locations()))
    try:
        store = SqliteYieldStore(args.db)
    except Exception as exc:  # sqlite3.Error, OSError: a path that is not a database
        return _error(prog, f"argument --db: {_one_line(exc)}")
    counted = YieldStats(store, portfolio.tiers).ingest(rows)
    locs = sorted({r.location for r in rows})
    print(f"{len(rows)} telemetry rows at {len(locs)} location(s); {counted} tier samples counted as available; "
          f"store {args.db}")
    if unknown:
        print(f"note: {len(unknown)} location(s) not in the portfolio (kept, never offered): {', '.join(unknown[:5])}")
    return 0


def _curve(args) -> int:
    from colorgrid.results import RunOutput
    from market.lem.profiles import iso_price
    from market.lem.schema import MarketDataError, load_market
    from market.vpp import SqliteYieldStore, SupplyError, YieldStats, build_supply, feeder_supply, with_vpp_offers
    from market.vpp.files import CURVE_COLUMNS, curve_rows, write_curves

    prog = f"{PROG} curve"
    portfolio, err = _portfolio(prog, args.portfolio)
    if err is not None:
        return err
    if args.market:
        try:
            market_doc = json.loads(Path(args.market).read_text())
            market = load_market(market_doc)
        except MarketDataError as exc:
            return _error(prog, f"argument --market: {len(exc.errors)} error(s): {'; '.join(exc.errors[:3])}")
        except (ValueError, OSError) as exc:
            return _error(prog, f"argument --market: not a readable JSON document: {_one_line(exc)}")
        if args.intervals is not None and args.intervals != market.intervals:
            return _error(prog, f"argument --intervals: the market covers {market.intervals} intervals, not {args.intervals}")
        n, interval_h = market.intervals, market.interval_h
        priority = [float(x) for x in market.iso.import_price_usd_per_mwh]
    else:
        n, interval_h = args.intervals or 24, 1.0
        priority = iso_price(n)
        market_doc = {"intervals": n, "interval_h": 1.0, "iso": {"import_price_usd_per_mwh": priority}}
    starts = [args.start_ms + int(round(t * interval_h * HOUR_MS)) for t in range(n)]
    try:
        stats = YieldStats(SqliteYieldStore(args.db), portfolio.tiers)
        curves = build_supply(portfolio, stats, starts, interval_h, args.confidence, priority=priority,
                              dispatch_at_ms=args.dispatch_at_ms)
        offers = with_vpp_offers(market_doc, curves)
    except SupplyError as exc:
        return _error(prog, f"argument --market: {_one_line(exc)}")
    except MarketDataError as exc:
        return _error(prog, f"argument --portfolio: the VPP offers are not valid LEM offers: {'; '.join(exc.errors[:3])}")
    except Exception as exc:  # sqlite3.DatabaseError: not a yield store
        if type(exc).__module__ == "sqlite3":
            return _error(prog, f"argument --db: {_one_line(exc)}")
        raise
    if not curves.curves:
        return _error(prog, f"argument --db: no yield statistics for any location·interval of the portfolio "
                            f"({len(curves.missing)} missing; run colorgrid vpp ingest first)")
    out = RunOutput(args.out, "vpp curve", {k: v for k, v in vars(args).items() if k not in ("out", "action")})
    out.path("offers.json").write_text(json.dumps(offers.model_dump(mode="json", exclude_none=True), indent=1,
                                                  sort_keys=True) + "\n")
    write_curves(curves, out.path("curves.json"))
    out.write_csv("curve.csv", CURVE_COLUMNS, curve_rows(curves))
    feeder = feeder_supply(curves)
    out.write_csv("feeder_curve.csv", ["interval", "start_ms", "price_usd_per_mwh", "p_kw"],
                  [[t, starts[t], p, q] for t in sorted(feeder) for p, q in feeder[t]])
    _plot_curve(out.path("curve.png"), curves, feeder, priority)
    offered = [o for o in offers.offers if o.id.startswith("vpp/")]
    out.figure("locations", len(curves.locations()))
    out.figure("vpp_offers", len(offered))
    out.figure("offered_kw_max", max((sum(q for _, q in feeder[t]) for t in feeder), default=0.0), "kW")
    out.figure("offered_kwh", sum(q for t in feeder for _, q in feeder[t]) * interval_h, "kWh")
    out.figure("missing", len(curves.missing))
    out.finish()
    print(f"{len(offered)} VPP offers at {len(curves.locations())} location(s), up to "
          f"{out.figures['offered_kw_max']:.1f} kW in an interval ({out.figures['offered_kwh']:.1f} kWh offered); "
          f"{len(curves.missing)} location·interval(s) without statistics")
    print(f"wrote offers.json, curves.json, curve.csv, feeder_curve.csv, curve.png, summary.json to {out.out_dir}")
    return 0


def _plot_curve(path, curves, feeder, priority) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for tier in curves.tiers:
        q = [sum(curves.quantity_kw(loc, tier, t) for loc in curves.locations()) for t in range(len(curves.starts_ms))]
        ax1.bar(range(len(q)), q, bottom=[sum(curves.quantity_kw(loc, t2, t) for loc in curves.locations()
                                              for t2 in curves.tiers[:curves.tiers.index(tier)])
                                          for t in range(len(q))], label=tier)
    ax1.set_xlabel("interval")
    ax1.set_ylabel("offered reduction, kW")
    ax1.set_title("VPP offers per interval and tier (all locations)")
    ax1.legend()
    peak = max(feeder, key=lambda t: sum(q for _, q in feeder[t])) if feeder else 0
    steps = feeder.get(peak, ())
    x, y = [0.0], []
    for p, q in steps:
        x.append(x[-1] + q)
        y.append(p)
    if steps:
        ax2.step(x, [y[0]] + y, where="pre")
        ax2.axhline(priority[peak], color="grey", ls="--", label=f"ISO {priority[peak]:g} USD/MWh")
        ax2.legend()
    ax2.set_xlabel("cumulative reduction, kW")
    ax2.set_ylabel("USD/MWh")
    ax2.set_title(f"feeder supply curve, interval {peak}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _dispatch(args) -> int:
    from colorgrid.results import RunOutput
    from cloud.config import ConfigError, read_key
    from market.vpp import (DispatchPlanError, SupplyError, cleared_from_schedule, dispatch_payloads, plan_dispatch,
                            read_schedule_csv)
    from market.vpp.files import read_curves

    prog = f"{PROG} dispatch"
    portfolio, err = _portfolio(prog, args.portfolio)
    if err is not None:
        return err
    try:
        curves = read_curves(args.curves)
    except SupplyError as exc:
        return _error(prog, f"argument --curves: {_one_line(exc)}")
    try:
        key_id, key = read_key(args.hmac_key_file, args.key_id)
    except ConfigError as exc:
        return _error(prog, f"argument {_one_line(exc)}")
    args.key_id = key_id
    try:
        schedule = read_schedule_csv(args.schedule)
    except DispatchPlanError as exc:
        return _error(prog, f"argument --schedule: {_one_line(exc)}")
    cleared = cleared_from_schedule(schedule)
    if not cleared:
        return _error(prog, f"argument --schedule: no VPP resource (vpp/<location>/<tier>) in {args.schedule}")
    too_long = [lt for lt, kw in cleared.items() if lt[1] >= len(curves.starts_ms) and abs(kw) > 1e-9]
    if too_long:
        return _error(prog, f"argument --schedule: interval {too_long[0][1]} beyond the curves' {len(curves.starts_ms)}")
    cleared = {lt: kw for lt, kw in cleared.items() if lt[1] < len(curves.starts_ms)}
    issued = args.issued_ms if args.issued_ms is not None else int(time.time() * 1000)
    dispatch_id = args.dispatch_id if args.dispatch_id is not None else issued // 1000
    try:
        plan = plan_dispatch(cleared, curves, portfolio, issued_ms=issued)
        payloads = dispatch_payloads(plan, args.key_id, key, issued, dispatch_id)
    except DispatchPlanError as exc:
        return _error(prog, f"argument --schedule: {_one_line(exc)}")
    except ValueError as exc:  # cloud.dispatch.DispatchError: a payload cloud would refuse
        return _error(prog, f"argument --issued-ms: {_one_line(exc)}")
    out = RunOutput(args.out, "vpp dispatch", {k: v for k, v in vars(args).items() if k not in ("out", "action")})
    out.write_csv("plan.csv", ["location", "interval", "start_ms", "cleared_kw", "reduction_kw", "goal_kw",
                               *[f"{t}_kw" for t in plan.tiers]],
                  [[loc, t, plan.starts_ms[t], plan.cleared_kw.get((loc, t), 0.0) + 0.0,
                    plan.reduction_kw.get((loc, t), 0.0) + 0.0, plan.goal_kw(loc, t),
                    *[plan.tier_kw.get((loc, tier, t), 0.0) + 0.0 for tier in plan.tiers]]
                   for loc in plan.locations() for t in range(len(plan.starts_ms)) if (loc, t) in plan.baseline_kw])
    (Path(out.out_dir) / "dispatch").mkdir(exist_ok=True)
    for loc, payload in sorted(payloads.items()):
        out.path(f"dispatch/{loc}.json").write_bytes(payload + b"\n")
    published = 0
    if args.broker:
        from cloud.dispatch import PublishError, publish_dispatch

        for loc, payload in sorted(payloads.items()):
            try:
                publish_dispatch(args.broker, loc, payload, timeout_s=args.timeout_s)
            except (PublishError, ValueError, OSError) as exc:
                out.figure("published", published)
                out.finish()
                return _error(prog, f"argument --broker: {_one_line(exc)} (published {published} of {len(payloads)})")
            published += 1
    out.figure("locations", len(payloads))
    out.figure("dispatch_id", dispatch_id)
    out.figure("cleared_kwh", sum(plan.cleared_kw.values()) * curves.interval_h, "kWh")
    out.figure("reduction_kwh", sum(plan.reduction_kw.values()) * curves.interval_h, "kWh")
    out.figure("clipped", list(plan.clipped))
    out.figure("published", published)
    out.finish()
    for line in plan.clipped:
        print(f"clipped: {line}")
    print(f"{len(payloads)} signed schedule(s) (dispatch {dispatch_id}, key {args.key_id}): "
          f"{out.figures['reduction_kwh']:.1f} of {out.figures['cleared_kwh']:.1f} kWh cleared honoured; "
          f"{'published ' + str(published) + ' to ' + args.broker if args.broker else 'not published (no --broker)'}")
    print(f"wrote plan.csv, dispatch/<location>.json, summary.json to {out.out_dir}")
    return 0
