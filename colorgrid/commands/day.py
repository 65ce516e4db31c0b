"""`colorgrid day`: the whole hierarchy in one command, on embedded defaults.

ISO price curve → VPP portfolio at the feeder's load locations, a simulated fleet per location (one
control group each) → its telemetry → yield statistics → supply curve → LEM offers merged with the
generated market → day-ahead clearing with the AC iteration → DLMPs and schedule.csv → VPP dispatch
(signed `cloud.dispatch` schedules, offered to cloud's `DispatchGoal`) → the same fleet runs the
dispatched goals → delivered vs cleared per location·interval (dispatch.csv) → closed-loop checks
(delivery RMS, tier contracts, the AC power flow with the delivered loads) → the VPP settled at the
DLMPs → P2P trades on a signed ledger with DLMP network charges → report.html.

Simulated time (colorgrid/commands/day_fleet.py): 2-s rounds; by default each market hour is a
300-s window (compression factor 12), `--no-compression` runs the real day. `--rtm`: every hour is
re-cleared as 12 real-time 5-min intervals by the LEM's RTM when the fleet first reaches it, with
the latest fleet state (colorgrid/commands/day_rtm.py, market/vpp/realtime.py); default day-ahead only.
"""
from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import replace

HELP = "the whole hierarchy in one run: ISO -> LEM with the VPP -> dispatch -> simulated fleet -> settlement"
PROG = "colorgrid day"
DAY_START_MS = 1_719_792_000_000          # 2024-07-01T00:00:00Z: interval 0 starts at 00:00 UTC
HOUR_MS = 3_600_000
NOTICE_MS = 12 * HOUR_MS                  # day-ahead: the dispatch is issued at noon the day before
DEFAULT_SIM_S = 300.0


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, float_range, fraction, non_negative_int, positive_float

    parser.add_argument("--feeder", default="ieee13", metavar="F.dss|NAME", help="OpenDSS master or shipped feeder (ieee13)")
    parser.add_argument("--intervals", type=count, default=24, help="hourly market intervals from 00:00 (default 24)")
    parser.add_argument("--hours", type=count, dest="intervals", help="the same as --intervals (1-h intervals)")
    parser.add_argument("--devices", type=count, default=3400, help="simulated devices over all VPP locations (default 3400)")
    parser.add_argument("--locations", type=count, default=None,
                        help="VPP at the N largest load locations (default: every load location)")
    parser.add_argument("--vpp-share", type=float_range(0.0, 1.0, low_open=True), default=0.3,
                        help="the VPP fleet's rated kW as a share of each location's load (default 0.3)")
    parser.add_argument("--confidence", type=fraction, default=0.9, help="supply quantities at this confidence (P90)")
    parser.add_argument("--max-shed-share", type=float_range(0.0, 1.0, low_open=True), default=1.0,
                        help="offer at most this share of each tier's kW (default 1; docs/vpp.md: what < 1 does to "
                             "the next tier's contract)")
    parser.add_argument("--iso-price", type=existing_file, default=None, metavar="CSV",
                        help="ISO price per interval (interval,price_usd_per_mwh); default: the shipped curve")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="market offers and fleet draws (default 0)")
    comp = parser.add_mutually_exclusive_group()
    comp.add_argument("--sim-s-per-interval", type=float_range(60.0), default=None,
                      help=f"simulated fleet seconds per market hour (default {DEFAULT_SIM_S:g}: time compression 12)")
    comp.add_argument("--no-compression", action="store_true",
                      help="simulate every market hour in full (3600 s of 2-s rounds; ~12x the fleet time)")
    parser.add_argument("--settle-s", type=float_range(0.0), default=60.0,
                        help="first seconds of each window not counted as delivered (default 60)")
    parser.add_argument("--baseline-s-per-hour", type=float_range(60.0), default=60.0,
                        help="undispatched telemetry per hour of day for the yield statistics (default 60)")
    parser.add_argument("--max-iterations", type=count, default=4, help="LEM clearings with the AC power flow (default 4)")
    parser.add_argument("--mip-gap", type=float_range(0.0, 0.1), default=1e-3, help="LEM relative MIP gap (default 1e-3)")
    parser.add_argument("--density", type=positive_float, default=1.0, help="generated market participants (default 1)")
    parser.add_argument("--p2p-participants", type=non_negative_int, default=100,
                        help="P2P prosumers trading on the ledger with DLMP network charges (default 100; 0: no P2P stage)")
    parser.add_argument("--rtm", action="store_true",
                        help="re-clear every hour as 12 real-time 5-min intervals (market.lem.rtm) with the latest "
                             "fleet state; default: day-ahead only")
    parser.add_argument("--no-report", action="store_true", help="skip the PNGs and report.html")
    parser.add_argument("--out", metavar="DIR", default="colorgrid-day", help="results folder (default ./colorgrid-day)")


class _Stages:
    def __init__(self, total: int):
        self.times: dict[str, float] = {}
        self.total = total
        self._name, self._t, self._i = None, 0.0, 0

    def start(self, name: str, text: str) -> None:
        self.stop()
        self._i += 1
        print(f"[{self._i}/{self.total}] {text}", flush=True)
        self._name, self._t = name, time.perf_counter()

    def stop(self) -> None:
        if self._name is not None:
            self.times[f"{self._name}_s"] = round(time.perf_counter() - self._t, 3)
            self._name = None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _error(message: str) -> int:
    from colorgrid.args import error

    return error(PROG, message)


def vpp_locations(feeder, limit: int | None) -> list[tuple[str, float]]:
    """[(node location, kW)] of the feeder's loads (a three-phase load split equally over its phase
    nodes; loads at one node summed), the largest `limit` (all when None), sorted by location."""
    from market.lem.offers import load_points
    from vocab.location import location_id

    kw: dict[str, float] = {}
    for loc, p in load_points(feeder):
        if "." in loc:
            kw[loc] = kw.get(loc, 0.0) + p
            continue
        phases = [k for k in feeder.buses[loc].nodes if 1 <= k <= 3]
        for k in phases:
            node = location_id(loc, k)
            kw[node] = kw.get(node, 0.0) + p / len(phases)
    ranked = sorted(kw.items(), key=lambda x: (-x[1], x[0]))[:limit]
    return sorted(ranked)


def run(args) -> int:
    from colorgrid.commands.day_fleet import Fleet
    from colorgrid.commands.market import _feeder_path
    from colorgrid.results import RunOutput
    from market.lem.profiles import SeriesError, iso_price, load_shape
    from market.network import NetworkError, load_dss

    args.sim_s_per_interval = 3600.0 if args.no_compression else (args.sim_s_per_interval or DEFAULT_SIM_S)
    n = args.intervals
    if args.settle_s >= args.sim_s_per_interval:
        return _error(f"argument --settle-s: must be below --sim-s-per-interval ({args.sim_s_per_interval:g})")
    try:
        prices = iso_price(n, args.iso_price)
    except SeriesError as exc:
        return _error(f"argument --iso-price: {_one_line(exc)}")
    stages = _Stages(11 - (args.p2p_participants == 0) - args.no_report)
    stages.start("feeder", f"feeder {args.feeder}")
    try:
        feeder = load_dss(_feeder_path(args.feeder))[0]
    except (NetworkError, ValueError, OSError) as exc:
        return _error(f"argument --feeder: {_one_line(exc)}")
    locs = vpp_locations(feeder, args.locations)
    if not locs:
        return _error(f"argument --feeder: {feeder.name} has no loads to place a VPP at")
    per_loc = (args.devices // len(locs)) // 10 * 10
    if per_loc < 10:
        return _error(f"argument --devices: {args.devices} devices give fewer than 10 per location at {len(locs)} "
                      f"location(s); give at least {10 * len(locs)}")
    out = RunOutput(args.out, "day", {k: v for k, v in vars(args).items() if k != "out"}, args.seed)
    fleet = Fleet.sized([l for l, _ in locs], dict(locs), per_loc, args.vpp_share, args.seed)
    ctx = _Day(args, out, stages, feeder, fleet, prices, load_shape(n))
    try:
        code = ctx.run()
    except _Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    stages.stop()
    out.figure("stage_times_s", dict(stages.times), "s")
    out.figure("total_s", round(sum(stages.times.values()), 3), "s")
    if not args.no_report:
        ctx.write_report()
    out.finish()
    print(f"total {out.figures['total_s']:.1f} s; results in {out.out_dir}")
    return code


class _Fail(RuntimeError):
    """A stage that cannot complete (printed as one line, exit 1)."""


class _Day:
    def __init__(self, args, out, stages, feeder, fleet, prices, shape):
        self.args, self.out, self.stages, self.feeder = args, out, stages, feeder
        self.fleet, self.prices, self.shape = fleet, prices, shape
        self.locs = fleet.locs
        self.n = args.intervals
        self.starts = [DAY_START_MS + t * HOUR_MS for t in range(self.n)]
        self.issued_ms = DAY_START_MS - NOTICE_MS

    def run(self) -> int:
        from market.vpp import SqliteYieldStore, YieldStats, build_supply
        from market.vpp.defaults import default_portfolio
        from market.vpp.files import CURVE_COLUMNS, curve_rows, portfolio_dict, write_curves

        from colorgrid.commands.day_fleet import baseline_telemetry

        a, out, st, fl = self.args, self.out, self.stages, self.fleet
        st.start("fleet_baseline", f"VPP at {len(self.locs)} location(s), {fl.per_loc} devices each; undispatched "
                                   f"fleet {a.baseline_s_per_hour:g} s per hour × {self.n}")
        self.devices_csv = out.write_csv("devices.csv", ["device", "location", "p_kw"], fl.device_rows())
        self.base_res, rows = baseline_telemetry(fl, self.devices_csv, self.starts, a.baseline_s_per_hour)
        tiers = tuple(self.base_res.tier_names)
        st.start("supply", "yield statistics -> supply curves per location·interval")
        db = out.path("vpp.db")
        if db.exists():
            db.unlink()
        stats = YieldStats(SqliteYieldStore(db), tiers)
        stats.ingest(rows)
        shares = self.base_res.config.shares()
        tier_kw = {loc: tuple(float(fl.sizes[g * fl.per_loc:(g + 1) * fl.per_loc].sum() * s) for s in shares)
                   for g, loc in enumerate(self.locs)}
        self.portfolio = default_portfolio(tier_kw, {loc: fl.per_loc for loc in self.locs}, tiers)
        out.path("portfolio.json").write_text(json.dumps(portfolio_dict(self.portfolio), indent=1, sort_keys=True) + "\n")
        curves = build_supply(self.portfolio, stats, self.starts, 1.0, a.confidence, priority=self.prices,
                              dispatch_at_ms=self.issued_ms, max_shed_share=a.max_shed_share)
        if curves.missing:
            raise _Fail(f"yield statistics missing: {curves.missing[0]}")
        write_curves(curves, out.path("curves.json"))
        out.write_csv("curve.csv", CURVE_COLUMNS, curve_rows(curves))
        self.curves = curves
        lem = self.clear(curves)
        plan, cleared = self.dispatch(curves, lem)
        self.fleet_dispatched(plan, cleared)
        self.checks(lem)
        self.settle_vpp(lem)
        if a.p2p_participants:
            self.p2p()
        self.print_figures()
        return 0

    def clear(self, curves):
        from market.lem import tables
        from market.lem.iteration import clear_with_ac
        from market.lem.offers import generate_offers, write_offers
        from market.lem.pricing import PricingError
        from market.lem.problem import ClearingError
        from market.lem.settlement import SettlementError, settle
        from market.network import PowerFlowNotConverged
        from market.vpp import with_vpp_offers

        a, out, st = self.args, self.out, self.stages
        st.start("market", f"LEM offers on {self.feeder.name} (seed {a.seed}) + the VPP's curve")
        doc = generate_offers(self.feeder, a.seed, self.n, a.density, iso_price_usd_per_mwh=self.prices)
        market = with_vpp_offers(doc, curves)
        write_offers(market.model_dump(mode="json", exclude_none=True), out.path("offers.json"))
        st.start("clear", f"day-ahead clearing of {self.n} interval(s) with the AC power flow "
                          f"(up to {a.max_iterations} iterations)")
        try:
            result = clear_with_ac(market, self.feeder, self.shape, max_iterations=a.max_iterations,
                                   mip_rel_gap=a.mip_gap, progress=lambda line: print(f"      {line}", flush=True))
        except (ClearingError, PricingError, PowerFlowNotConverged, ValueError) as exc:
            raise _Fail(f"clearing failed: {_one_line(exc)}") from None
        try:
            books = settle(market, result.net, result.clearing)
        except SettlementError as exc:
            raise _Fail(_one_line(exc)) from None
        out.write_csv("dlmp.csv", tables.DLMP_COLUMNS, tables.dlmp_table(result))
        out.write_csv("schedule.csv", tables.SCHEDULE_COLUMNS, tables.schedule_table(market, result))
        out.write_csv("settlement.csv", tables.SETTLEMENT_COLUMNS, tables.settlement_table(books))
        out.write_csv("critical_set.csv", tables.CRITICAL_COLUMNS, tables.critical_table(result))
        out.write_csv("iterations.csv", tables.ITERATION_COLUMNS, tables.iteration_table(result))
        out.write_csv("slacks.csv", tables.SLACK_COLUMNS, tables.slack_table(result))
        out.write_csv("violations.csv", tables.VIOLATION_COLUMNS, tables.violation_table(result))
        f = out.figure
        f("objective_usd", result.clearing.objective_usd, "USD")
        f("status", result.status)
        f("iterations", len(result.iterations))
        f("violations_left", len(result.violations))
        f("rtm", bool(a.rtm))
        f("rtm_note", "each hour re-cleared as 12 x 5-min real-time intervals (market.lem.rtm) with the latest "
                      "fleet state; delivered judged against the real-time reduction, settled at the DA DLMPs"
                      if a.rtm else "day-ahead only (--rtm re-clears 5-min real-time intervals)")
        return market, result, books

    def dispatch(self, curves, lem):
        from cloud.dispatch import DispatchGoal
        from cloud.goals import ConstantGoal
        from market.vpp import cleared_from_schedule, dispatch_payloads, plan_dispatch, read_schedule_csv

        self.stages.start("dispatch", "VPP dispatch per location·interval -> signed goal schedules")
        cleared = cleared_from_schedule(read_schedule_csv(self.out.out_dir / "schedule.csv"))
        plan = plan_dispatch(cleared, curves, self.portfolio, issued_ms=self.issued_ms)
        key = secrets.token_bytes(32)          # a lab key of this run: signer and verifier share it in process
        self.goal = DispatchGoal({"vpp": key}, fallback=ConstantGoal(plan.no_shed_kw))
        for loc, payload in dispatch_payloads(plan, "vpp", key, self.issued_ms, dispatch_id=1).items():
            reason = self.goal.offer(loc, payload, now_ms=self.issued_ms)
            if reason:
                raise _Fail(f"cloud refused the dispatch for {loc}: {reason}")
        for line in plan.clipped:
            print(f"      clipped: {line}")
        self.out.figure("clipped", list(plan.clipped))
        self.plan, self.rt = plan, None
        if self.args.rtm:
            from colorgrid.commands.day_rtm import HourClearer
            from market.vpp.realtime import RealTimeGoal

            market, result, _ = lem
            self.rt = HourClearer(market, result, self.feeder)
            self.goal = RealTimeGoal(plan, curves, self.rt, fallback=self.goal)
        return plan, cleared

    def fleet_dispatched(self, plan, cleared) -> None:
        from colorgrid.commands.day_fleet import TRACKING_COLUMNS, measure, run_dispatched
        from market.vpp.checks import dispatch_columns

        a, out = self.args, self.out
        factor = HOUR_MS / 1000.0 / a.sim_s_per_interval
        self.stages.start("fleet_dispatched", f"the fleet runs the dispatched goals ({self.n} × {a.sim_s_per_interval:g} s "
                                              f"simulated at 2-s rounds; time compression {factor:g})")
        from colorgrid.commands.day_rtm import RTM_COLUMNS, RtmFailed

        t0 = time.perf_counter()
        try:
            run, clock = run_dispatched(self.fleet, self.devices_csv, self.goal, DAY_START_MS, HOUR_MS, self.n,
                                        a.sim_s_per_interval)
        except RtmFailed as exc:
            raise _Fail(str(exc)) from None
        wall = time.perf_counter() - t0
        rt_wall = sum(self.rt.seconds) if self.rt is not None else 0.0
        reference = None
        if self.rt is not None:
            out.write_csv("rtm.csv", RTM_COLUMNS, self.rt.rows)
            out.figure("rtm_hours_cleared", len(self.rt.seconds))
            out.figure("rtm_clear_s", rt_wall, "s")
            reference = lambda loc, t_s: self.goal.reduction_kw(loc, clock.market_ms(int(round(t_s * 1000))))  # noqa: E731
        rows, tracking = measure(self.fleet, self.base_res, run, plan, self.curves, cleared, a.sim_s_per_interval,
                                 a.settle_s, reference)
        out.write_csv("dispatch.csv", dispatch_columns(self.curves.tiers), [r.cells() for r in rows])
        out.write_csv("tracking.csv", TRACKING_COLUMNS, tracking)
        f = out.figure
        f("devices", self.fleet.per_loc * len(self.locs))
        f("vpp_locations", len(self.locs))
        f("fleet_rounds", int(run.t_s.size))
        f("fleet_ms_per_round", 1000.0 * (wall - rt_wall) / max(1, run.t_s.size), "ms")
        f("time_compression", {"compressed": factor > 1.0 + 1e-9, "factor": factor,
                               "sim_s_per_interval": a.sim_s_per_interval, "interval_h": 1.0,
                               "default": f"{DEFAULT_SIM_S:g} s per 1-h interval (factor {3600 / DEFAULT_SIM_S:g}); "
                                          "--no-compression: 3600 s (the real day)",
                               "settle_s": a.settle_s, "baseline_s_per_hour": a.baseline_s_per_hour,
                               "round_s": run.config.round_s})
        self.tracking = tracking

    def checks(self, lem) -> None:
        """Delivery RMS and contracts from dispatch.csv as written; the AC power flow with delivered loads."""
        from market.vpp.checks import (CONTRACT_COLUMNS, ac_with_delivered, contract_rows, contract_uses,
                                       delivery_rms_pct, read_dispatch_csv, unplanned_shed_pct)

        out, f = self.out, self.out.figure
        self.stages.start("checks", "closed-loop checks: delivered vs cleared, tier contracts, AC power flow with "
                                    "the delivered loads")
        rows = read_dispatch_csv(out.out_dir / "dispatch.csv", self.curves.tiers)
        self.rows = rows
        overall, by_loc = delivery_rms_pct(rows)
        f("delivery_rms_pct", overall, "%")
        f("delivery_rms_pct_by_location", by_loc, "%")
        estimate = {(tr[0], tr[1]): tr[4] for tr in self.tracking}     # the controller's estimated enabled kW
        est = [replace(r, delivered_kw=r.baseline_kw - estimate[(r.location, r.interval)]) for r in rows]
        f("delivery_rms_pct_controller_estimate", delivery_rms_pct(est)[0], "%")
        f("vpp_cleared_kwh", sum(r.cleared_kw for r in rows) * self.curves.interval_h, "kWh")
        f("vpp_delivered_kwh", sum(r.delivered_kw for r in rows) * self.curves.interval_h, "kWh")
        uses = contract_uses(rows, self.portfolio, self.curves.interval_h, self.issued_ms)
        out.write_csv("contracts.csv", CONTRACT_COLUMNS, contract_rows(uses))
        f("contract_violations", [u.why() for u in uses if not u.ok])
        f("unplanned_shed_pct_max", unplanned_shed_pct(rows, self.portfolio), "%")
        market, result, _ = lem
        found, new = ac_with_delivered(self.feeder, market, result, self.shape,
                                       {(r.location, r.interval): r.delivered_kw for r in rows})
        f("ac_delivered_violations", len(found))
        f("violations_after_delivery", len(new))
        out.write_csv("violations_delivered.csv", ["interval", "kind", "where", "value", "limit", "unit", "new"],
                      [[v.interval, v.kind, v.where, v.value, v.limit, v.unit, v in new] for v in found])

    def settle_vpp(self, lem) -> None:
        from colorgrid.commands.day_money import money_per_tier, vpp_settlement

        out = self.out
        self.stages.start("settle", "the VPP settled at the DLMPs for its delivered reduction; money per tier")
        market, result, books = lem
        prices = result.clearing.prices
        rows, revenue = vpp_settlement(self.rows, prices, self.curves.interval_h)
        out.write_csv("vpp_settlement.csv", ["location", "interval", "dlmp_usd_per_mwh", "cleared_kw", "delivered_kw",
                                             "cleared_usd", "delivered_usd"], rows)
        lem_vpp = sum(r.amount_usd for r in books.rows if r.party.startswith("vpp/"))
        f = out.figure
        f("vpp_revenue_usd", revenue, "USD")
        f("vpp_revenue_cleared_usd", lem_vpp, "USD")
        f("vpp_imbalance_usd", revenue - lem_vpp, "USD")
        f("balance_gap_usd", float(abs(books.balance_gap_usd).max()), "USD")
        f("dso_surplus_usd", books.dso_surplus_usd, "USD")
        out.write_csv("money_per_tier.csv", ["tier", "delivered_kwh", "revenue_usd", "events", "customer_pay_usd",
                                             "margin_usd"], money_per_tier(self.plan, self.portfolio, self.rows, prices,
                                                                           self.curves.interval_h))

    def p2p(self) -> None:
        from colorgrid.commands.day_p2p import P2PFailed, run_p2p

        a = self.args
        self.stages.start("p2p", f"P2P trades of {a.p2p_participants} prosumers on the ledger, DLMP network charges")
        try:
            run_p2p(self.out, a.p2p_participants, self.n, a.seed)
        except P2PFailed as exc:
            raise _Fail(str(exc)) from None

    def write_report(self) -> None:
        from colorgrid.commands.day_report import write_html, write_pngs

        out = self.out
        self.stages.start("report", "report.html (PNGs from the CSVs, self-contained)")
        for name in ("dlmp_heatmap.png", "vpp_bid_cleared.png", "dispatch_delivered.png", "tracking.png",
                     "money_per_tier.png", "report.html"):
            out.path(name)
        pngs = write_pngs(out.out_dir, self.curves.tiers)
        self.stages.stop()
        out.figure("stage_times_s", dict(self.stages.times), "s")
        out.figure("total_s", round(sum(self.stages.times.values()), 3), "s")
        write_html(out.out_dir / "report.html", out.figures, out.units, pngs)

    def print_figures(self) -> None:
        out = self.out
        for name in ("objective_usd", "vpp_cleared_kwh", "vpp_delivered_kwh", "vpp_revenue_usd", "vpp_revenue_cleared_usd",
                     "delivery_rms_pct", "delivery_rms_pct_controller_estimate", "balance_gap_usd",
                     "ac_delivered_violations", "violations_after_delivery", "contract_violations", "unplanned_shed_pct_max", "rtm",
                     "p2p_trades", "p2p_network_charges_usd", "p2p_ledger_ok"):
            if name not in out.figures:
                continue
            v = out.figures[name]
            shown = f"{v:.4f}" if isinstance(v, float) else (str(len(v)) if isinstance(v, list) else str(v))
            print(f"{name:<38} {shown} {out.units.get(name, '')}".rstrip())
        rms = out.figures["delivery_rms_pct_by_location"]
        worst = max(rms, key=rms.get)
        print(f"{'worst location':<38} {worst} ({rms[worst]:.3f} % RMS of its baseline)")
