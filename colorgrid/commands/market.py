"""`colorgrid market offers|clear`: generate a market on a feeder; clear it day-ahead with DLMPs."""
from __future__ import annotations

import sys
import time
from pathlib import Path

HELP = "local energy market: generate offers on a feeder (offers), clear day-ahead or real-time with DLMPs (clear)"
PROG = "colorgrid market"


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, float_range, non_negative_int, positive_float
    from colorgrid.results import add_out_argument

    sub = parser.add_subparsers(dest="action", required=True, metavar="offers|clear")
    off = sub.add_parser("offers", help="a realistic mixed set of offers and bids at the feeder's buses (offers.json)")
    off.add_argument("--feeder", required=True, metavar="F.dss|NAME", help="OpenDSS master file or a shipped feeder name")
    off.add_argument("--seed", type=non_negative_int, default=0, help="the document is a function of feeder and seed")
    off.add_argument("--intervals", type=count, default=24, help="hourly intervals (default 24)")
    off.add_argument("--density", type=positive_float, default=1.0, help="multiplies the participant counts (default 1)")
    add_out_argument(off, required=True)
    clr = sub.add_parser("clear", help="clear the market (SCUC, pricing LP, AC power-flow iteration), settle it")
    clr.add_argument("--feeder", required=True, metavar="F.dss|NAME", help="OpenDSS master file or a shipped feeder name")
    clr.add_argument("--offers", required=True, type=existing_file, metavar="offers.json", help="market data (schema: docs/market.md)")
    clr.add_argument("--horizon", choices=("dam", "rtm"), default="dam",
                     help="dam: day-ahead, hourly; rtm: real-time, 5-min intervals against the day-ahead schedule")
    clr.add_argument("--dam", default=None, metavar="DIR",
                     help="rtm: the day-ahead result folder (a `market clear --horizon dam --out DIR`); "
                          "default: clear the day-ahead first")
    clr.add_argument("--hour", type=non_negative_int, default=0, help="rtm: the day-ahead interval the window starts in")
    clr.add_argument("--rt-load-shape", type=existing_file, default=None, metavar="CSV",
                     help="rtm: load factor per 5-min interval (interval,load_factor); default: the day-ahead factor")
    clr.add_argument("--load-shape", default=None, metavar="CSV|flat",
                     help="load factor per interval (interval,load_factor); flat = 1.0; default: the shipped shape")
    clr.add_argument("--iso-price", type=existing_file, default=None, metavar="CSV",
                     help="ISO price per interval (interval,price_usd_per_mwh), replaces the offers' ISO curve")
    clr.add_argument("--intervals", type=count, default=None,
                     help="dam: check the offers cover N intervals; rtm: N 5-min intervals (default 12)")
    clr.add_argument("--ledger", default=None, metavar="FILE.sqlite",
                     help="dam: append the settlement to this signed ledger (created if new; `colorgrid ledger verify`)")
    clr.add_argument("--ledger-seed", type=non_negative_int, default=0,
                     help="seed of the ledger's operator, validator and meter keys (default 0)")
    clr.add_argument("--ledger-start-ms", type=non_negative_int, default=0,
                     help="UTC epoch ms of interval 0 on the ledger (default 0); a later day appends after it")
    clr.add_argument("--max-iterations", type=count, default=8, help="clearings with the AC power flow (default 8)")
    clr.add_argument("--mip-gap", type=float_range(0.0, 0.1), default=1e-4, help="relative MIP gap (default 1e-4)")
    add_out_argument(clr, required=True)


def _feeder_path(text: str) -> Path:
    from market.network.data import FEEDERS, feeder_path

    path = Path(text)
    if path.is_file():
        return path
    if text.lower() in FEEDERS:
        return feeder_path(text)
    raise ValueError(f"no file {text!r} and no shipped feeder of that name (shipped: {', '.join(sorted(FEEDERS))})")


def _load_feeder(prog: str, text: str):
    from market.network import NetworkError, load_dss

    try:
        return load_dss(_feeder_path(text))[0], None
    except (NetworkError, ValueError, OSError) as exc:
        return None, _error(prog, f"argument --feeder: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _error(prog: str, message: str) -> int:
    from colorgrid.args import error

    return error(prog, message)


def run(args) -> int:
    return _offers(args) if args.action == "offers" else _clear(args)


def _offers(args) -> int:
    from colorgrid.results import RunOutput
    from market.lem.offers import counts, generate_offers, write_offers

    prog = f"{PROG} offers"
    feeder, err = _load_feeder(prog, args.feeder)
    if err is not None:
        return err
    try:
        doc = generate_offers(feeder, args.seed, args.intervals, args.density)
    except ValueError as exc:
        return _error(prog, _one_line(exc))
    out = RunOutput(args.out, "market offers", {k: v for k, v in vars(args).items() if k not in ("out", "action")},
                    args.seed)
    path = write_offers(doc, out.path("offers.json"))
    for name, value in counts(doc).items():
        out.figure(name, value)
    out.finish()
    n = counts(doc)
    print(f"{n['offers_and_bids']} participants ({n['offers']} offers, {n['bids']} bids, {n['blocks']} blocks, "
          f"{n['storage']} storage, {n['units']} units; {n['complex_blocks']} complex blocks, {n['bilaterals']} bilateral) "
          f"on {feeder.name}; wrote {path}")
    return 0


def _stage(i: int, n: int, text: str) -> float:
    print(f"[{i}/{n}] {text}", flush=True)
    return time.perf_counter()


def _inputs(args, prog):
    """(market, load shape) or an exit code."""
    from market.lem.profiles import SeriesError, iso_price, load_shape
    from market.lem.schema import MarketDataError, load_market

    try:
        market = load_market(Path(args.offers))
    except MarketDataError as exc:
        more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
        return _error(prog, f"argument --offers: {len(exc.errors)} error(s): {'; '.join(exc.errors[:3])}{more}")
    except (ValueError, OSError) as exc:  # not JSON, unreadable
        return _error(prog, f"argument --offers: not a readable JSON document: {_one_line(exc)}")
    if args.horizon == "dam" and args.intervals is not None and args.intervals != market.intervals:
        return _error(prog, f"argument --intervals: the offers cover {market.intervals} intervals, not {args.intervals}")
    if market.interval_h != 1.0:
        return _error(prog, f"argument --offers: interval_h={market.interval_h}; the day-ahead market clears 1-h intervals")
    try:
        if args.iso_price and args.horizon == "dam":
            prices = iso_price(market.intervals, args.iso_price)
            market = market.model_copy(update={"iso": market.iso.model_copy(
                update={"import_price_usd_per_mwh": prices, "export_price_usd_per_mwh": None})})
            market = load_market(market.model_dump())  # the cross-field checks again (prices in [floor, cap])
        if args.load_shape == "flat":
            shape = [1.0] * market.intervals
        else:
            shape = load_shape(market.intervals, args.load_shape)
    except SeriesError as exc:
        flag = "--iso-price" if args.iso_price and str(args.iso_price) in str(exc) else "--load-shape"
        return _error(prog, f"argument {flag}: {_one_line(exc)}")
    except MarketDataError as exc:
        return _error(prog, f"argument --iso-price: {'; '.join(exc.errors[:3])}")
    return market, shape


def _clear(args) -> int:
    from colorgrid.results import RunOutput
    from market.lem import tables
    from market.lem.pricing import PricingError
    from market.lem.problem import ClearingError
    from market.lem.settlement import SettlementError, settle
    from market.network import PowerFlowNotConverged

    prog = f"{PROG} clear"
    if args.ledger and args.horizon == "rtm":
        return _error(prog, "argument --ledger: only the day-ahead settlement is booked on the ledger (use --horizon dam)")
    if args.ledger and (Path(args.ledger).is_dir() or not Path(args.ledger).resolve().parent.is_dir()):
        return _error(prog, f"argument --ledger: {args.ledger} is a directory or its folder does not exist")
    if args.load_shape not in (None, "flat") and not Path(args.load_shape).is_file():
        return _error(prog, f"argument --load-shape: file not found: {args.load_shape}")
    times: dict[str, float] = {}
    t0 = _stage(1, 6 if args.horizon == "rtm" else 5, f"reading {args.offers}")
    got = _inputs(args, prog)
    if isinstance(got, int):
        return got
    market, shape = got
    if args.horizon == "rtm":
        from colorgrid.commands.market_rtm import clear_rtm_command

        return clear_rtm_command(args, prog, market, shape)
    t1 = _stage(2, 5, f"feeder {args.feeder}")
    times["read_s"] = t1 - t0
    feeder, err = _load_feeder(prog, args.feeder)
    if err is not None:
        return err
    t2 = _stage(3, 5, f"clearing {market.intervals} intervals with the AC power flow "
                      f"(up to {args.max_iterations} iterations)")
    times["feeder_s"] = t2 - t1
    try:
        result, block_rows, excluded = clear_dam_blocks(args, market, feeder, shape)
    except ValueError as exc:  # a location the feeder does not have, a bad shape
        return _error(prog, f"argument --offers: {_one_line(exc)}")
    except (ClearingError, PricingError, PowerFlowNotConverged) as exc:
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return 1
    t3 = _stage(4, 5, "settlement at the DLMPs")
    times["clear_s"] = t3 - t2
    try:
        books = settle(market, result.net, result.clearing)
    except SettlementError as exc:
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return 1
    t4 = _stage(5, 5, f"writing {args.out}")
    times["settle_s"] = t4 - t3
    params = {k: v for k, v in vars(args).items() if k not in ("out", "action")}
    out = RunOutput(args.out, "market clear", params)
    out.write_csv("dlmp.csv", tables.DLMP_COLUMNS, tables.dlmp_table(result))
    out.write_csv("schedule.csv", tables.SCHEDULE_COLUMNS, tables.schedule_table(market, result))
    out.write_csv("settlement.csv", tables.SETTLEMENT_COLUMNS, tables.settlement_table(books))
    out.write_csv("critical_set.csv", tables.CRITICAL_COLUMNS, tables.critical_table(result))
    out.write_csv("iterations.csv", tables.ITERATION_COLUMNS, tables.iteration_table(result))
    out.write_csv("slacks.csv", tables.SLACK_COLUMNS, tables.slack_table(result))
    out.write_csv("violations.csv", tables.VIOLATION_COLUMNS, tables.violation_table(result))
    out.write_csv("commitment.csv", tables.COMMITMENT_COLUMNS, tables.commitment_table(market, result.clearing))
    out.write_csv("blocks.csv", tables.BLOCK_COLUMNS, tables.block_table(block_rows))
    _heatmap(out, result)
    times["write_s"] = time.perf_counter() - t4
    _figures(out, result, books, times)
    _block_figures(out, market, result, block_rows, excluded)
    if args.ledger:
        code = _ledger(prog, args, out, market, books, feeder.name)
        if code:
            return code
    out.finish()
    _print(out, result)
    return _verdict(prog, result)


def _ledger(prog, args, out, market, books, feeder_name) -> int:
    """Append the settlement to the signed ledger; its figures into summary.json; 0 or an exit code."""
    import sqlite3

    from market.lem.ledger_entries import append_settlement
    from market.settlement.errors import SettlementError as LedgerRuleError

    try:
        rep = append_settlement(args.ledger, books, market.interval_h, args.ledger_seed, args.ledger_start_ms,
                                f"lem:{feeder_name}")
    except LedgerRuleError as exc:
        return _error(prog, f"argument --ledger: {_one_line(exc)}")
    except (OSError, sqlite3.Error) as exc:
        return _error(prog, f"argument --ledger: cannot use {args.ledger}: {_one_line(exc)}")
    out.figure("ledger", {"path": rep.path, "created": rep.created, "entries": rep.entries, "first_seq": rep.first_seq,
                          "last_seq": rep.last_seq, "checkpoint_period": rep.checkpoint_period,
                          "minted_ntok": rep.minted_ntok, "pool_residual_ntok": rep.pool_residual_ntok,
                          "rounding_bound_ntok": rep.rounding_bound_ntok,
                          "operator_public_hex": rep.operator_public_hex})
    print(f"ledger: {rep.entries} entries appended to {rep.path} (seq {rep.first_seq}..{rep.last_seq}, checkpoint "
          f"{rep.checkpoint_period}); verify: colorgrid ledger verify {rep.path}")
    return 0


def clear_dam_blocks(args, market, feeder, shape):
    """The DA clearing with the AC iteration, re-cleared without each paradoxically accepted block
    (blocks.clear_without_paradox): (IteratedClearing, block report, excluded block ids)."""
    from market.lem.blocks import clear_without_paradox
    from market.lem.iteration import clear_with_ac

    def clear(fixed):
        if fixed:
            print(f"      re-clearing without the paradoxically accepted block(s) {len(fixed)} so far", flush=True)
        r = clear_with_ac(market, feeder, shape, max_iterations=args.max_iterations, mip_rel_gap=args.mip_gap,
                          progress=lambda line: print(f"      {line}", flush=True), fixed=fixed)
        return r.clearing, r.net, r

    result, report, excluded, _ = clear_without_paradox(market, clear)
    return result, report, excluded


def _block_figures(out, market, result, report, excluded) -> None:
    from market.lem.bilateral import network_charge_usd

    f = out.figure
    f("blocks_accepted", sum(r.ratio > 1e-9 for r in report))
    f("blocks_excluded_paradoxical", list(excluded))
    rejected = [r for r in report if r.status in ("paradoxically_rejected", "excluded_paradoxical")]
    f("blocks_paradoxically_rejected", len(rejected))
    f("blocks_opportunity_cost_usd", sum(r.opportunity_cost_usd for r in rejected), "USD")
    f("bilateral_network_charge_usd", network_charge_usd(market, result.net, result.clearing.prices), "USD")
    from market.lem.equilibrium import self_schedules

    rows = self_schedules(market, result.net, result.clearing)
    f("equilibrium_max_gap_usd", max((s.gap_usd for s in rows), default=0.0), "USD")
    f("equilibrium_violations", sorted(s.party for s in rows if s.gap_usd > 1e-6 * max(1.0, abs(s.best_profit_usd))))


def _figures(out, result, books, times) -> None:
    c = result.clearing
    f = out.figure
    f("objective_usd", c.objective_usd, "USD")
    f("pricing_objective_usd", c.pricing_objective_usd, "USD")
    f("uplift_usd", sum(c.uplift_usd.values()), "USD")
    f("uplift_by_party_usd", dict(sorted(c.uplift_usd.items())), "USD")
    f("status", result.status)
    f("solver_status", "optimal")  # clear_dam raises unless both the MIP and the pricing LP are optimal
    f("iterations", len(result.iterations))
    f("critical_lines", len(result.critical.lines))
    f("critical_voltages", len(result.critical.voltages))
    f("critical_set_size", len(result.critical.lines) + len(result.critical.voltages))
    f("violations_left", len(result.violations))
    f("factorizations", result.factorizations)
    totals: dict[str, float] = {}
    for s in c.slacks:
        key = f"{s.family}_{'kwh' if s.unit == 'kW' else 'pu_h'}"
        totals[key] = totals.get(key, 0.0) + s.amount  # 1-h intervals: kW·h
    f("slack_totals", dict(sorted(totals.items())))
    f("dso_congestion_rent_usd", float(books.congestion_rent_usd.sum()), "USD")
    f("dso_loss_surplus_usd", float(books.loss_surplus_usd.sum()), "USD")
    f("dso_voltage_rent_usd", float(books.voltage_rent_usd.sum()), "USD")
    f("balance_gap_usd", float(abs(books.balance_gap_usd).max()), "USD")
    f("stage_times_s", {**{k: round(v, 6) for k, v in times.items()},
                        **{f"iteration_{k}": round(v, 6) for k, v in result.timings_s.items()}}, "s")


def _heatmap(out, result) -> None:
    path = out.path("dlmp_heatmap.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = result.clearing.prices
    order = sorted(range(len(p.locations)), key=lambda j: (p.locations[j].partition(".")[2], p.locations[j]))
    data = p.dlmp_usd_per_mwh[order]
    fig, ax = plt.subplots(figsize=(9, max(3.0, min(14.0, 0.12 * len(order) + 1.5))))
    im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
    step = max(1, len(order) // 40)
    ax.set_yticks(range(0, len(order), step), [p.locations[j] for j in order][::step], fontsize=6)
    ax.set_xlabel("interval")
    ax.set_ylabel("location (bus.phase, grouped by phase)")
    ax.set_title(f"DLMP, USD/MWh ({result.status} after {len(result.iterations)} iteration(s))")
    fig.colorbar(im, ax=ax, label="USD/MWh")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(out, result) -> None:
    for name in ("objective_usd", "pricing_objective_usd", "uplift_usd", "status", "iterations", "critical_set_size",
                 "violations_left", "dso_congestion_rent_usd", "dso_loss_surplus_usd"):
        value = out.figures[name]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<24} {shown} {out.units.get(name, '')}".rstrip())
    print(f"wrote {', '.join(sorted(set(out.files) | {'summary.json'}))} to {out.out_dir}")


def _verdict(prog: str, result) -> int:
    """Exit 2 with one line when the market only clears with unserved or spilled energy (files are
    written, slacks.csv names each use); a warning line when network limits are left violated."""
    energy = [s for s in result.clearing.slacks if s.family.startswith("energy")]
    if energy:
        kwh = sum(s.amount for s in energy)
        worst = max(energy, key=lambda s: s.amount)
        return _error(prog, f"the market clears only with {kwh:.3f} kWh of {'/'.join(sorted({s.family for s in energy}))} "
                            f"slack in {len({s.interval for s in energy})} interval(s) (largest {worst.amount:.3f} kW "
                            f"in interval {worst.interval}); see slacks.csv")
    if result.violations:
        print(f"warning: {len(result.violations)} limit violation(s) left in the AC solution ({result.status}); "
              f"see violations.csv", file=sys.stderr)
    return 0
