"""`colorgrid day`: the whole hierarchy in one command, on embedded defaults.

ISO price curve → VPP portfolio at the feeder's load locations, a simulated fleet per location (one
control group each) → its telemetry → yield statistics → supply curve → LEM offers merged with the
generated market → day-ahead clearing with the AC iteration → DLMPs and schedule.csv → VPP dispatch
(signed `cloud.dispatch` schedules, offered to cloud's `DispatchGoal`) → the same fleet runs the
dispatched goals → delivered vs cleared per location·interval → the VPP settled at the DLMPs for its
delivered reduction, and the LEM's balance identity checked.

Simulated time (the honest part): the fleet is the vectorized simulator at 2-s rounds with real
refractory timers, but a market hour is represented by a window of `--sim-s-per-interval` seconds
(default 300): the dispatched goal of interval t holds for window t, so the fleet meets every
interval change of the day within minutes, not hours (stricter on tracking than real hours are).
Delivered kW of an interval = its baseline − the mean enabled kW over the window after its first
`--settle-s` (default 60). The undispatched telemetry for the yield statistics is likewise
`--baseline-s-per-hour` seconds (default 60) per hour of day, stamped at the start of that hour.
Devices are constant loads: their availability is the same at every hour (thermostatic physics
over a real day is not simulated here).
"""
from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

HELP = "the whole hierarchy in one run: ISO -> LEM with the VPP -> dispatch -> simulated fleet -> settlement"
PROG = "colorgrid day"
DAY_START_MS = 1_719_792_000_000          # 2024-07-01T00:00:00Z: interval 0 starts at 00:00 UTC
HOUR_MS = 3_600_000
NOTICE_MS = 12 * HOUR_MS                  # day-ahead: the dispatch is issued at noon the day before
STAGES = 10


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, float_range, fraction, non_negative_int, positive_float

    parser.add_argument("--feeder", default="ieee13", metavar="F.dss|NAME", help="OpenDSS master or shipped feeder (ieee13)")
    parser.add_argument("--intervals", type=count, default=24, help="hourly market intervals from 00:00 (default 24)")
    parser.add_argument("--devices", type=count, default=3400, help="simulated devices over all VPP locations (default 3400)")
    parser.add_argument("--locations", type=count, default=None,
                        help="VPP at the N largest load locations (default: every load location)")
    parser.add_argument("--vpp-share", type=float_range(0.0, 1.0, low_open=True), default=0.3,
                        help="the VPP fleet's rated kW as a share of each location's load (default 0.3)")
    parser.add_argument("--confidence", type=fraction, default=0.9, help="supply quantities at this confidence (P90)")
    parser.add_argument("--iso-price", type=existing_file, default=None, metavar="CSV",
                        help="ISO price per interval (interval,price_usd_per_mwh); default: the shipped curve")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="market offers and fleet draws (default 0)")
    parser.add_argument("--sim-s-per-interval", type=float_range(60.0), default=300.0,
                        help="simulated fleet seconds per market hour (default 300; module doc)")
    parser.add_argument("--settle-s", type=float_range(0.0), default=60.0,
                        help="first seconds of each window not counted as delivered (default 60)")
    parser.add_argument("--baseline-s-per-hour", type=float_range(60.0), default=60.0,
                        help="undispatched telemetry per hour of day for the yield statistics (default 60)")
    parser.add_argument("--max-iterations", type=count, default=4, help="LEM clearings with the AC power flow (default 4)")
    parser.add_argument("--mip-gap", type=float_range(0.0, 0.1), default=1e-3, help="LEM relative MIP gap (default 1e-3)")
    parser.add_argument("--density", type=positive_float, default=1.0, help="generated market participants (default 1)")
    parser.add_argument("--out", metavar="DIR", default="colorgrid-day", help="results folder (default ./colorgrid-day)")


class _Stages:
    def __init__(self):
        self.times: dict[str, float] = {}
        self._name, self._t, self._i = None, 0.0, 0

    def start(self, name: str, text: str) -> None:
        self.stop()
        self._i += 1
        print(f"[{self._i}/{STAGES}] {text}", flush=True)
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


class _Compressed:
    """A goal schedule (cloud.goals.GoalSchedule's two methods) in market time asked in simulated time: window t of `window_ms` (after
    `warm_ms`) is market interval t of `interval_ms` from `start_ms`; the warm-up lies before the
    first interval (the schedule's fallback)."""

    def __init__(self, goal, start_ms: int, warm_ms: int, window_ms: int, interval_ms: int):
        self.goal, self.start_ms, self.warm_ms = goal, start_ms, warm_ms
        self.window_ms, self.interval_ms = window_ms, interval_ms

    def market_ms(self, t_ms: int) -> int:
        if t_ms < self.warm_ms:
            return self.start_ms - 1
        return self.start_ms + (t_ms - self.warm_ms) * self.interval_ms // self.window_ms

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.goal.goal_kw(group, self.market_ms(t_ms), demand_kw)

    def source(self, group: str, t_ms: int) -> str:
        return self.goal.source(group, self.market_ms(t_ms))


def run(args) -> int:
    import numpy as np

    from colorgrid.commands.market import _feeder_path
    from colorgrid.results import RunOutput
    from market.lem.profiles import SeriesError, iso_price, load_shape
    from market.network import NetworkError, load_dss

    stages = _Stages()
    n = args.intervals
    if args.settle_s >= args.sim_s_per_interval:
        return _error(f"argument --settle-s: must be below --sim-s-per-interval ({args.sim_s_per_interval:g})")
    try:
        prices = iso_price(n, args.iso_price)
    except SeriesError as exc:
        return _error(f"argument --iso-price: {_one_line(exc)}")
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
    ctx = _Day(args, out, stages, feeder, locs, per_loc, prices, load_shape(n))
    try:
        code = ctx.run()
    except _Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    stages.stop()
    out.figure("stage_times_s", dict(stages.times), "s")
    out.figure("total_s", round(sum(stages.times.values()), 3), "s")
    out.finish()
    print(f"total {out.figures['total_s']:.1f} s; results in {out.out_dir}")
    return code


class _Fail(RuntimeError):
    """A stage that cannot complete (printed as one line, exit 1)."""


class _Day:
    def __init__(self, args, out, stages, feeder, locs, per_loc, prices, shape):
        import numpy as np

        self.args, self.out, self.stages, self.feeder = args, out, stages, feeder
        self.locs, self.per_loc, self.prices, self.shape = [l for l, _ in locs], per_loc, prices, shape
        self.loc_kw = dict(locs)
        self.n = args.intervals
        self.starts = [DAY_START_MS + t * HOUR_MS for t in range(self.n)]
        self.issued_ms = DAY_START_MS - NOTICE_MS
        self.names = {f"g{g}": loc for g, loc in enumerate(self.locs)} if len(self.locs) > 1 else {"fleet": self.locs[0]}
        self.np = np

    # -- fleet ---------------------------------------------------------------------------------
    def fleet_config(self, warmup_s: float, duration_s: float):
        from firmware_sim.scenario import ScenarioConfig

        return ScenarioConfig(scenario="fairness", devices=self.per_loc * len(self.locs), groups=len(self.locs),
                              base=1.0, amplitude=0.0, warmup_s=warmup_s, duration_s=duration_s, seed=self.args.seed,
                              device_kw=str(self.devices_csv), devices_per_gateway=10)

    def write_devices(self) -> None:
        """Device sizes: uniform 1–5 kW draws scaled per location to vpp_share × its load."""
        np = self.np
        rng = np.random.default_rng([self.args.seed, 17])
        rows, sizes = [], []
        for loc in self.locs:
            draw = 1.0 + 4.0 * rng.random(self.per_loc)
            draw *= self.args.vpp_share * self.loc_kw[loc] / draw.sum()
            sizes.append(draw)
            rows += [[len(rows), loc, float(x)] for x in draw]
        self.sizes = np.concatenate(sizes)
        self.out.write_csv("devices.csv", ["device", "location", "p_kw"], rows)
        self.devices_csv = self.out.out_dir / "devices.csv"

    def baseline_telemetry(self):
        """The undispatched fleet, `baseline_s_per_hour` per hour, as telemetry rows per location."""
        from firmware_sim.scenario import run_scenario
        from market.vpp import TelemetryRow

        w = self.args.baseline_s_per_hour
        res = run_scenario(self.fleet_config(0.0, w * self.n))
        self.fleet_shares = tuple(res.config.shares())
        rows = []
        hour = (res.t_s // w).astype(int)
        for g, name in enumerate(res.group_names):
            loc = self.names[name]
            for m in range(res.t_s.size):
                t_ms = self.starts[hour[m]] + int(round((res.t_s[m] - hour[m] * w) * 1000))
                rows.append(TelemetryRow(loc, t_ms, tuple(float(x) for x in res.group_enabled_tier_kw[m, g]),
                                         tuple(bool(p > 1e-6) for p in res.group_p_off[m, g])))
        return res, rows

    # -- the day -------------------------------------------------------------------------------
    def run(self) -> int:
        from market.vpp import SqliteYieldStore, YieldStats, build_supply
        from market.vpp.defaults import default_portfolio
        from market.vpp.files import CURVE_COLUMNS, curve_rows, portfolio_dict, write_curves

        a, out, st, np = self.args, self.out, self.stages, self.np
        st.start("fleet_baseline", f"VPP at {len(self.locs)} location(s), {self.per_loc} devices each; undispatched "
                                   f"fleet {a.baseline_s_per_hour:g} s per hour × {self.n}")
        self.write_devices()
        base_res, rows = self.baseline_telemetry()
        tiers = tuple(base_res.tier_names)
        st.start("supply", "yield statistics -> supply curves per location·interval")
        db = out.path("vpp.db")
        if db.exists():
            db.unlink()
        stats = YieldStats(SqliteYieldStore(db), tiers)
        stats.ingest(rows)
        gof = base_res.config.group_names()
        tier_kw = {self.names[name]: tuple(float(self.sizes[np.asarray(self._group_devices(g))].sum() * s)
                                           for s in self.fleet_shares)
                   for g, name in enumerate(gof)}
        portfolio = default_portfolio(tier_kw, {loc: self.per_loc for loc in self.locs}, tiers)
        self.portfolio = portfolio
        import json
        out.path("portfolio.json").write_text(json.dumps(portfolio_dict(portfolio), indent=1, sort_keys=True) + "\n")
        curves = build_supply(portfolio, stats, self.starts, 1.0, a.confidence, priority=self.prices,
                              dispatch_at_ms=self.issued_ms)
        if curves.missing:
            raise _Fail(f"yield statistics missing: {curves.missing[0]}")
        write_curves(curves, out.path("curves.json"))
        out.write_csv("curve.csv", CURVE_COLUMNS, curve_rows(curves))
        lem = self.clear(curves)
        plan, cleared = self.dispatch(curves, portfolio, lem)
        run = self.fleet_dispatched(plan)
        return self.report(curves, plan, cleared, run, lem)

    def ac_with_delivered(self, market, result, delivered: dict) -> tuple[list, list]:
        """The AC power flow of every interval with the VPP's delivered (not cleared) reduction:
        (violations, those the market's final AC check did not have)."""
        import numpy as np

        from market.lem import ACPowerFlow, node_injections
        from market.lem.iteration import violations_of
        from market.vpp import parse_offer_id

        schedule = {k: np.asarray(v, float).copy() for k, v in result.clearing.schedule_kw.items()}
        for loc in self.locs:
            ids = [r for r in schedule if (parse_offer_id(r) or ("", ""))[0] == loc]
            for t in range(self.n):
                total = sum(schedule[r][t] for r in ids)
                want = delivered[(loc, t)]
                for r in ids:                       # scale the location's tiers to what was delivered
                    schedule[r][t] = schedule[r][t] * want / total if total > 1e-9 else 0.0
                if total <= 1e-9 and ids and abs(want) > 1e-9:
                    schedule[ids[0]][t] = want
        inj = node_injections(market, result.net, schedule)
        ac = ACPowerFlow(self.feeder)
        found = [v for t in range(self.n) for v in violations_of(ac.solve(t, self.shape[t], inj[:, t]))]
        known = {(v.interval, v.kind, v.where) for v in result.violations}
        return found, [v for v in found if (v.interval, v.kind, v.where) not in known]

    def _group_devices(self, g: int):
        return range(g * self.per_loc, (g + 1) * self.per_loc)

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
        st.start("settle", "LEM settlement at the DLMPs (balance identity)")
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
        return market, result, books

    def dispatch(self, curves, portfolio, lem):
        from cloud.dispatch import DispatchGoal
        from cloud.goals import ConstantGoal
        from market.vpp import cleared_from_schedule, dispatch_payloads, plan_dispatch, read_schedule_csv

        self.stages.start("dispatch", "VPP dispatch per location·interval -> signed goal schedules")
        cleared = cleared_from_schedule(read_schedule_csv(self.out.out_dir / "schedule.csv"))
        plan = plan_dispatch(cleared, curves, portfolio, issued_ms=self.issued_ms)
        key = secrets.token_bytes(32)          # a lab key of this run: signer and verifier share it in process
        self.goal = DispatchGoal({"vpp": key}, fallback=ConstantGoal(plan.no_shed_kw))
        for loc, payload in dispatch_payloads(plan, "vpp", key, self.issued_ms, dispatch_id=1).items():
            reason = self.goal.offer(loc, payload, now_ms=self.issued_ms)
            if reason:
                raise _Fail(f"cloud refused the dispatch for {loc}: {reason}")
        for line in plan.clipped:
            print(f"      clipped: {line}")
        return plan, cleared

    def fleet_dispatched(self, plan):
        from firmware_sim.scenario import run_scenario
        from market.vpp import RenamedGroups

        a = self.args
        warm = 60.0
        self.stages.start("fleet_dispatched", f"the fleet runs the dispatched goals ({self.n} × {a.sim_s_per_interval:g} s "
                                              f"simulated at 2-s rounds)")
        goal = _Compressed(RenamedGroups(self.goal, self.names), DAY_START_MS, int(warm * 1000),
                           int(round(a.sim_s_per_interval * 1000)), HOUR_MS)
        self.warm_s = warm
        return run_scenario(self.fleet_config(warm, a.sim_s_per_interval * self.n), goal=goal)

    def report(self, curves, plan, cleared, run, lem) -> int:
        np, a, out = self.np, self.args, self.out
        market, result, books = lem
        self.stages.start("report", "delivered vs cleared, VPP settlement, report")
        prices = result.clearing.prices
        col = {loc: j for j, loc in enumerate(prices.locations)}
        rows, vpp_rows, err_by_loc = [], [], {}
        revenue = 0.0
        for g, name in enumerate(run.group_names):
            loc = self.names[name]
            for t in range(self.n):
                lo = self.warm_s + t * a.sim_s_per_interval + a.settle_s
                hi = self.warm_s + (t + 1) * a.sim_s_per_interval
                sel = (run.t_s >= lo - 1e-9) & (run.t_s < hi - 1e-9)
                base = curves.curves[(loc, t)].baseline_kw
                delivered = base - float(run.group_achieved_kw[sel, g].mean())
                c = float(cleared.get((loc, t), 0.0))
                dlmp = float(prices.dlmp_usd_per_mwh[col[loc], t])
                usd = delivered * dlmp * curves.interval_h / 1000.0
                revenue += usd
                rows.append([loc, t, base, c, delivered, delivered - c])
                vpp_rows.append([loc, t, dlmp, c, delivered, c * dlmp * curves.interval_h / 1000.0, usd])
                err_by_loc.setdefault(loc, []).append((delivered - c, base))
        out.write_csv("delivery.csv", ["location", "interval", "baseline_kw", "cleared_kw", "delivered_kw", "error_kw"], rows)
        out.write_csv("vpp_settlement.csv", ["location", "interval", "dlmp_usd_per_mwh", "cleared_kw", "delivered_kw",
                                             "cleared_usd", "delivered_usd"], vpp_rows)
        rms = {loc: 100.0 * float(np.sqrt(np.mean([e * e for e, _ in v])) / np.mean([b for _, b in v]))
               for loc, v in err_by_loc.items()}
        all_e = [e for v in err_by_loc.values() for e, _ in v]
        all_b = [b for v in err_by_loc.values() for _, b in v]
        overall = 100.0 * float(np.sqrt(np.mean(np.square(all_e))) / np.mean(all_b))
        lem_vpp = sum(r.amount_usd for r in books.rows if r.party.startswith("vpp/"))
        f = out.figure
        f("objective_usd", result.clearing.objective_usd, "USD")
        f("status", result.status)
        f("iterations", len(result.iterations))
        f("violations_left", len(result.violations))
        f("vpp_locations", len(self.locs))
        f("devices", self.per_loc * len(self.locs))
        f("vpp_cleared_kwh", sum(cleared.values()) * curves.interval_h, "kWh")
        f("vpp_delivered_kwh", sum(r[4] for r in rows) * curves.interval_h, "kWh")
        f("vpp_revenue_usd", revenue, "USD")
        f("vpp_revenue_cleared_usd", lem_vpp, "USD")
        f("vpp_imbalance_usd", revenue - lem_vpp, "USD")
        f("delivery_rms_pct", overall, "%")
        f("delivery_rms_pct_by_location", rms, "%")
        f("balance_gap_usd", float(np.abs(books.balance_gap_usd).max()), "USD")
        f("dso_surplus_usd", books.dso_surplus_usd, "USD")
        f("clipped", list(plan.clipped))
        f("time_compression", {"sim_s_per_interval": a.sim_s_per_interval, "settle_s": a.settle_s,
                               "baseline_s_per_hour": a.baseline_s_per_hour, "round_s": run.config.round_s,
                               "interval_h": curves.interval_h})
        out.write_csv("money_per_tier.csv", ["tier", "delivered_kwh", "revenue_usd", "events", "customer_pay_usd",
                                             "margin_usd"], self.money_per_tier(plan, curves, rows, prices, col))
        self.stages.start("ac_delivered", "AC power flow with the delivered reductions")
        found, new = self.ac_with_delivered(market, result, {(r[0], r[1]): r[4] for r in rows})
        f("ac_delivered_violations", len(found))
        f("ac_delivered_new_violations", len(new))
        out.write_csv("violations_delivered.csv", ["interval", "kind", "where", "value", "limit", "unit", "new"],
                      [[v.interval, v.kind, v.where, v.value, v.limit, v.unit, v in new] for v in found])
        self.plot(rows, out.path("delivery.png"))
        for name in ("objective_usd", "vpp_cleared_kwh", "vpp_delivered_kwh", "vpp_revenue_usd", "vpp_revenue_cleared_usd",
                     "delivery_rms_pct", "balance_gap_usd", "ac_delivered_violations", "ac_delivered_new_violations"):
            v = out.figures[name]
            shown = f"{v:.4f}" if isinstance(v, float) else str(v)
            print(f"{name:<28} {shown} {out.units.get(name, '')}".rstrip())
        worst = max(rms, key=rms.get)
        print(f"{'worst location':<28} {worst} ({rms[worst]:.3f} % RMS of its baseline)")
        self.stages.stop()
        return 0

    def money_per_tier(self, plan, curves, rows, prices, col) -> list[list]:
        """Per sheddable tier: the delivered reduction split over tiers as the plan split it (shed
        order), its revenue at the DLMPs, the customers' pay by their contracts (per kWh delivered and
        per event = run of consecutive curtailed intervals) and the VPP's margin."""
        dt = curves.interval_h
        out = []
        for tier in plan.tiers:
            kwh = usd = pay = 0.0
            events = 0
            for loc, t, _, _, delivered, _ in rows:
                r = plan.reduction_kw.get((loc, t), 0.0)
                part = plan.tier_kw.get((loc, tier, t), 0.0)
                if r <= 1e-9 or part <= 0.0:
                    continue
                share = delivered * part / r
                kwh += share * dt
                usd += share * float(prices.dlmp_usd_per_mwh[col[loc], t]) * dt / 1000.0
                c = self.portfolio.holding(loc, tier).contract
                pay += share * dt * c.compensation_usd_per_kwh
            for loc in self.locs:
                ts = plan.curtailed_intervals(loc, tier)
                n_ev = sum(1 for i, t in enumerate(ts) if i == 0 or ts[i - 1] != t - 1)
                events += n_ev
                h = self.portfolio.holding(loc, tier)
                if h is not None and h.contract is not None:
                    pay += n_ev * h.contract.compensation_usd_per_event
            out.append([tier, kwh, usd, events, pay, usd - pay])
        return out

    def plot(self, rows, path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        locs = self.locs
        cols = min(4, len(locs))
        nrows = (len(locs) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False, sharex=True)
        for i, loc in enumerate(locs):
            ax = axes[i // cols][i % cols]
            r = [x for x in rows if x[0] == loc]
            ax.step([x[1] for x in r], [x[3] for x in r], where="post", label="cleared")
            ax.plot([x[1] for x in r], [x[4] for x in r], "o", ms=3, label="delivered")
            ax.set_title(loc, fontsize=8)
            ax.tick_params(labelsize=7)
        for j in range(len(locs), nrows * cols):
            axes[j // cols][j % cols].axis("off")
        axes[0][0].legend(fontsize=7)
        fig.supxlabel("interval (hour)")
        fig.supylabel("demand reduction, kW")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
