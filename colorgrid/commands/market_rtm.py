"""`colorgrid market clear --horizon rtm`: one real-time window of 5-min intervals against the day-ahead
schedule (read from `--dam DIR`, or cleared first), DA commitments held, two-settlement."""
from __future__ import annotations

import sys
import time
from types import SimpleNamespace

RT_DEFAULT_INTERVALS = 12


def _dam_reference(args, prog, market, shape, feeder):
    """(DamReference, DA result or None) or an exit code."""
    from colorgrid.commands.market import _error, _one_line, clear_dam_blocks
    from market.lem.rtm import DamReference, RtmDataError

    if args.dam is not None:
        try:
            return DamReference.read(args.dam, market), None
        except RtmDataError as exc:
            return _error(prog, f"argument --dam: {_one_line(exc)}")
    try:
        result = clear_dam_blocks(args, market, feeder, shape)[0]
    except ValueError as exc:
        return _error(prog, f"argument --offers: {_one_line(exc)}")
    return DamReference.from_clearing(market, result.net, result.clearing, result.critical), result


def _rt_series(args, prog, n, dam, nominal, hours):
    """(load factor per RT interval, ISO price per RT interval or None) or an exit code."""
    from colorgrid.commands.market import _error, _one_line
    from market.lem.profiles import SeriesError, iso_price, load_shape

    try:
        factors = load_shape(n, args.rt_load_shape) if args.rt_load_shape else \
            [float(dam.load_factor(nominal)[h]) for h in hours]
    except SeriesError as exc:
        return _error(prog, f"argument --rt-load-shape: {_one_line(exc)}")
    try:
        prices = iso_price(n, args.iso_price) if args.iso_price else None
    except SeriesError as exc:
        return _error(prog, f"argument --iso-price: {_one_line(exc)}")
    return factors, prices


def clear_rtm_command(args, prog: str, market, shape) -> int:
    from colorgrid.commands.market import _error, _load_feeder, _one_line, _stage
    from colorgrid.results import RunOutput
    from market.lem import tables
    from market.lem.ac_flow import ACPowerFlow
    from market.lem.pricing import PricingError
    from market.lem.problem import ClearingError
    from market.lem.rtm import RtmDataError, clear_rtm, rt_network, window_hours
    from market.lem.rtm_settlement import settle_rtm
    from market.lem.settlement import SettlementError
    from market.network import PowerFlowNotConverged

    n = args.intervals or RT_DEFAULT_INTERVALS
    try:
        hours = window_hours(market.intervals, market.interval_h, args.hour, n)
    except RtmDataError as exc:
        flag = "--hour" if "hour" in str(exc) else "--intervals"
        return _error(prog, f"argument {flag}: {_one_line(exc)}")
    times: dict[str, float] = {}
    t1 = _stage(2, 6, f"feeder {args.feeder}")
    feeder, err = _load_feeder(prog, args.feeder)
    if err is not None:
        return err
    t2 = _stage(3, 6, f"day-ahead reference ({'read from ' + str(args.dam) if args.dam else 'cleared first'})")
    times["feeder_s"] = t2 - t1
    try:
        got = _dam_reference(args, prog, market, shape, feeder)
        if isinstance(got, int):
            return got
        dam, _ = got
        nominal = ACPowerFlow(feeder).nominal_load_kw
        series = _rt_series(args, prog, n, dam, nominal, hours)
        if isinstance(series, int):
            return series
        factors, iso = series
        t3 = _stage(4, 6, f"real-time window: {n} × 5 min from interval {args.hour} (DA commitments held)")
        times["dam_s"] = t3 - t2
        net = rt_network(feeder, market, dam, args.hour, factors)
        t_net = time.perf_counter()
        timings: dict[str, float] = {}
        rt = clear_rtm(market, dam, net, args.hour, iso_price_usd_per_mwh=iso, mip_rel_gap=args.mip_gap, timings=timings)
        times["rt_network_s"] = t_net - t3
        times["rt_clear_s"] = time.perf_counter() - t_net
        t4 = _stage(5, 6, "two-settlement: DA quantity at DA price + deviation at RT price")
        books = settle_rtm(market, dam, rt)
    except RtmDataError as exc:
        return _error(prog, f"argument --dam: {_one_line(exc)}")
    except ValueError as exc:   # a location the feeder does not have
        return _error(prog, f"argument --offers: {_one_line(exc)}")
    except (ClearingError, PricingError, PowerFlowNotConverged, SettlementError) as exc:
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return 1
    t5 = _stage(6, 6, f"writing {args.out}")
    times["settle_s"] = t5 - t4
    params = {k: v for k, v in vars(args).items() if k not in ("out", "action")}
    out = RunOutput(args.out, "market clear", params)
    c = rt.clearing
    out.write_csv("dlmp.csv", tables.DLMP_COLUMNS, tables.clearing_dlmp_table(c.prices))
    out.write_csv("schedule.csv", tables.RT_SCHEDULE_COLUMNS, tables.rt_schedule_table(market, dam, rt))
    out.write_csv("settlement.csv", tables.TWO_SETTLEMENT_COLUMNS, tables.two_settlement_table(books))
    out.write_csv("slacks.csv", tables.SLACK_COLUMNS, [[s.family, s.where, s.interval, s.amount, s.unit] for s in c.slacks])
    from colorgrid.commands.market import _heatmap

    _heatmap(out, SimpleNamespace(clearing=c, status=f"real-time from interval {args.hour}", iterations=[None]))
    f = out.figure
    f("horizon", "rtm")
    f("rt_intervals", n)
    f("rt_interval_min", 5)
    f("hour", args.hour)
    f("objective_usd", c.objective_usd, "USD")
    f("pricing_objective_usd", c.pricing_objective_usd, "USD")
    f("uplift_usd", sum(c.uplift_usd.values()), "USD")
    f("solver_status", "optimal")
    f("critical_set_size", len(dam.critical.lines) + len(dam.critical.voltages))
    f("held_commitments", len(rt.fixed))
    f("slack_totals", {s: sum(x.amount for x in c.slacks if x.family == s) for s in sorted({x.family for x in c.slacks})})
    dev = sum(r.deviation_amount_usd for r in books.rows if r.kind != "dso")
    f("deviation_payments_usd", dev, "USD")
    f("balance_gap_usd", float(abs(books.balance_gap_usd).max()), "USD")
    f("stage_times_s", {**{k: round(v, 6) for k, v in times.items()},
                        **{f"rt_{k}": round(v, 6) for k, v in timings.items()}}, "s")
    out.finish()
    for name in ("objective_usd", "pricing_objective_usd", "uplift_usd", "held_commitments", "deviation_payments_usd",
                 "balance_gap_usd"):
        value = out.figures[name]
        print(f"{name:<24} {value:.6g} {out.units.get(name, '')}".rstrip() if isinstance(value, float)
              else f"{name:<24} {value}")
    print(f"wrote {', '.join(sorted(set(out.files) | {'summary.json'}))} to {out.out_dir}")
    energy = [s for s in c.slacks if s.family.startswith("energy")]
    if energy:
        return _error(prog, f"the real-time window clears only with {sum(s.amount for s in energy):.3f} kW·intervals of "
                            f"energy slack; see slacks.csv")
    return 0


__all__ = ["clear_rtm_command"]
