"""`colorgrid te run`: simulate a day of P2P trading with PV prosumers, settle it on the ledger."""
from __future__ import annotations

import re
import sys

HELP = "transactive P2P market: simulate a day (call auction, McAfee or order book) and settle it on a signed ledger"


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, finite_float, fraction, int_at_least, non_negative_int
    from colorgrid.results import add_out_argument

    sub = parser.add_subparsers(dest="action", required=True, metavar="run")
    run = sub.add_parser("run", help="simulate a day of P2P trading; writes orders, trades, prices, balances, ledger")
    run.add_argument("--participants", type=count, default=200, help="prosumers and consumers (default 200)")
    run.add_argument("--intervals", type=count, default=96, help="market intervals per day (default 96 = 15 min)")
    run.add_argument("--seed", type=non_negative_int, default=0, help="scenario, limit prices and keys derive from it")
    run.add_argument("--mechanism", choices=("call", "mcafee", "cda"), default="call",
                     help="call: uniform-price call auction; mcafee: with trade reduction; cda: continuous order book")
    run.add_argument("--pv-share", type=fraction, default=0.5, help="fraction of participants with PV (default 0.5)")
    run.add_argument("--k", type=k_rule, default="1/2", metavar="NUM/DEN",
                     help="k-rule: price = ask + k (bid - ask) between the marginal orders (default 1/2)")
    run.add_argument("--tie-break", choices=("time", "pro_rata"), default="time")
    run.add_argument("--grid-sell-usd-per-mwh", type=finite_float, default=250.0, help="retail tariff (grid sells)")
    run.add_argument("--grid-buy-usd-per-mwh", type=finite_float, default=40.0, help="feed-in tariff (grid buys)")
    run.add_argument("--charges", choices=("dlmp", "none"), default="dlmp",
                     help="network charge per trade: DLMP(buyer) - DLMP(seller), or none")
    run.add_argument("--dlmp-csv", metavar="PATH", type=existing_file, default=None,
                     help="DLMPs per location: a CSV with columns bus, phase, interval, dlmp_usd_per_mwh "
                          "(participants are placed on its buses; the LEM's `dlmp.csv` is coming); "
                          "default: synthetic DLMPs")
    run.add_argument("--checkpoint-every", type=count, default=4, help="intervals per ledger checkpoint (default 4)")
    run.add_argument("--threshold-k", type=int_at_least(1), choices=(1, 2, 3), default=2, help="validator signatures needed of 3 (default 2)")
    run.add_argument("--penalty-uusd-per-kwh", type=non_negative_int, default=0, help="burned per undelivered Wh sold")
    run.add_argument("--periodic-burn-ppm", type=non_negative_int, default=0,
                     help="token policy: burn this share (ppm) of every positive balance each burn period (default 0: none)")
    run.add_argument("--periodic-burn-every", type=non_negative_int, default=0,
                     help="intervals per burn period (with --periodic-burn-ppm)")
    run.add_argument("--verify-workers", type=count, default=1, help="processes for ledger signature checks")
    run.add_argument("--communities", type=count, default=1,
                     help="N >= 2: N P2P communities of --participants each, each on its own sidechain ledger "
                          "(OUT/community-<c>.sqlite), trading residual orders with each other through LEM-to-LEM "
                          "exchanges, and a main chain (OUT/main.sqlite) recording their checkpoints (default 1)")
    run.add_argument("--exchange-capacity-wh", type=non_negative_int, default=50_000,
                     help="with --communities: Wh per interval and direction between two communities (default 50000)")
    run.add_argument("--ledger-pg", metavar="DSN", default=None,
                     help="keep the ledger in PostgreSQL (e.g. postgresql://127.0.0.1/test; needs psycopg) "
                          "instead of OUT/ledger.sqlite; the namespace's tables are replaced")
    run.add_argument("--ledger-namespace", default="te_ledger", help="PostgreSQL table prefix (default te_ledger)")
    add_out_argument(run)


def k_rule(text: str) -> tuple[int, int]:
    """`NUM/DEN` (or `NUM`) with 0 <= NUM/DEN <= 1 -> (NUM, DEN)."""
    import argparse

    num, _, den = str(text).partition("/")
    try:
        k = int(num), int(den or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction NUM/DEN of integers like 1/2, got {text!r}") from None
    if k[1] <= 0 or not 0 <= k[0] <= k[1]:
        raise argparse.ArgumentTypeError(f"k-rule must be a fraction NUM/DEN between 0 and 1 (DEN > 0), got {text!r}")
    return k


def run(args) -> int:
    from colorgrid.results import RunOutput
    from market.settlement.errors import SettlementError
    from market.te.auction.errors import TeError
    from market.te.auction.prices import TablePriceLookup
    from market.te.auction.simulation import SimConfig, run_day

    failures = (TeError, SettlementError)  # the market's errors and its ledger's

    from colorgrid.args import error

    prog = "colorgrid te run"
    k_num, k_den = args.k if isinstance(args.k, tuple) else k_rule(args.k)
    try:
        cfg = SimConfig(args.participants, args.intervals, args.seed, args.mechanism, args.pv_share,
                        args.grid_sell_usd_per_mwh, args.grid_buy_usd_per_mwh, k_num, k_den, args.tie_break,
                        args.charges, args.checkpoint_every, args.threshold_k, args.penalty_uusd_per_kwh,
                        args.periodic_burn_ppm, args.periodic_burn_every)
    except (TeError, ValueError) as exc:
        return error(prog, str(exc))
    try:
        prices = TablePriceLookup.from_dlmp_csv(args.dlmp_csv) if args.dlmp_csv else None
    except (TeError, ValueError, OSError) as exc:
        return error(prog, f"argument --dlmp-csv: {exc}")
    params = {k: v for k, v in vars(args).items() if k not in ("out", "action")}
    params["k"] = f"{k_num}/{k_den}"
    if params.get("ledger_pg"):  # never write a password into summary.json
        params["ledger_pg"] = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", params["ledger_pg"]))
    out = RunOutput(args.out, "te run", params, args.seed)
    if args.communities > 1:
        if args.ledger_pg or args.dlmp_csv:
            flag = "--ledger-pg" if args.ledger_pg else "--dlmp-csv"
            return error(prog, f"argument --communities: not with {flag} (the communities keep SQLite ledgers "
                         "under --out and use synthetic DLMPs)")
        return _run_communities(args, cfg, out)
    try:
        store = _store(out, args.ledger_pg, args.ledger_namespace)
    except failures as exc:
        return error(prog, f"argument {'--ledger-pg' if args.ledger_pg else '--out'}: {exc}")
    try:
        day = run_day(cfg, store, prices, max(1, args.verify_workers))
    except failures as exc:
        print(f"colorgrid te run: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    assert day.report is not None  # run_day always verifies
    _write(out, day)
    _figures(out, cfg, day)
    if out.enabled:  # summary.json (its versions block imports the whole stack: only when asked)
        out.finish()
    _print(out, day)
    return 0 if day.report.ok else 1


def _fresh_sqlite(out, name: str):
    from market.settlement.sqlite_store import SQLiteStore
    from market.settlement.store import MemoryLedgerStore

    path = out.path(name)
    if path is None:
        return MemoryLedgerStore()
    for suffix in ("", "-wal", "-shm"):  # a rerun into the same folder starts a fresh ledger
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            stale.unlink()
    return SQLiteStore(path)


def _run_communities(args, cfg, out) -> int:
    """--communities N: the sidechains, the main chain, exchanges.csv; everything verified and cross-checked."""
    import time

    from market.settlement.chains import check_against_main, check_conservation, check_exchange_pairs
    from market.settlement.errors import SettlementError
    from market.settlement.verify import verify_ledger
    from market.te.auction.communities import EXCHANGE_COLUMNS, community_id, run_communities
    from market.te.auction.errors import TeError

    t0 = time.perf_counter()
    n = args.communities
    stores = [_fresh_sqlite(out, f"{community_id(c)}.sqlite") for c in range(n)]
    main_store = _fresh_sqlite(out, "main.sqlite")
    try:
        res = run_communities(cfg, n, stores, main_store, args.exchange_capacity_wh)
        reports = [verify_ledger(s, workers=max(1, args.verify_workers)) for s in stores]
        main_report = verify_ledger(main_store, workers=max(1, args.verify_workers))
        problems = [f"{community_id(c)}: {r.describe()}" for c, r in enumerate(reports) if not r.ok]
        if not main_report.ok:
            problems.append(f"main: {main_report.describe()}")
        problems += check_exchange_pairs(stores)
        rows, supply_problems = check_conservation(stores)
        problems += supply_problems
        for c, s in enumerate(stores):
            found, unrecorded = check_against_main(s, main_store)
            problems += [f"{community_id(c)}: {p}" for p in found]
            if unrecorded:
                problems.append(f"{community_id(c)}: {unrecorded} checkpoint(s) not recorded on the main chain")
    except (TeError, SettlementError) as exc:
        print(f"colorgrid te run: {exc}", file=sys.stderr)
        return 1
    finally:
        for s in stores + [main_store]:
            s.close()
    out.write_csv("exchanges.csv", EXCHANGE_COLUMNS, res.exchanges)
    f = out.figure
    f("communities", n)
    f("participants_per_community", cfg.participants)
    f("intervals", cfg.intervals)
    f("exchanges", len(res.exchanges))
    f("exchange_traded_wh", sum(x[4] for x in res.exchanges), "Wh")
    f("exchange_delivered_wh", sum(x[5] for x in res.exchanges), "Wh")
    f("exchange_value_ntok", sum(x[7] for x in res.exchanges), "ntok")
    f("ledger_entries", [r.entries_checked for r in reports])
    f("checkpoints", [r.checkpoints_checked for r in reports])
    f("main_entries", main_report.entries_checked)
    f("main_checkpoints", main_report.checkpoints_checked)
    f("minted_ntok", sum(r["minted_ntok"] for r in rows), "ntok")
    f("burned_ntok", sum(r["burned_ntok"] for r in rows), "ntok")
    f("periodic_burned_ntok", sum(r["periodic_burned_ntok"] for r in rows), "ntok")
    f("circulating_ntok", sum(r["circulating_ntok"] for r in rows), "ntok")
    f("problems", problems)
    f("all_ok", not problems)
    total_s = time.perf_counter() - t0
    if out.enabled:  # summary.json: the total time is its wall block's wall_time_s
        out.finish()
    width = max(len(k) for k in out.figures)
    for name, value in out.figures.items():
        print(f"{name:<{width}}  {value} {out.units.get(name, '')}".rstrip())
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"total time {total_s:.1f} s for {n} communities x {cfg.participants} participants x {cfg.intervals} "
          "intervals (simulation, settlement, main chain, verification of every ledger, pair and supply checks)")
    if out.enabled:
        print(f"wrote {', '.join(sorted(set(out.files) | {'summary.json'}))} to {out.out_dir}")
    return 0 if not problems else 1


def _store(out, pg_dsn: str | None, namespace: str):
    from market.settlement.sqlite_store import SQLiteStore
    from market.settlement.store import MemoryLedgerStore

    if pg_dsn:
        from market.settlement.postgres_store import PostgresStore

        PostgresStore(pg_dsn, namespace).drop()  # a fresh ledger for this run
        return PostgresStore(pg_dsn, namespace)
    path = out.path("ledger.sqlite")
    if path is None:
        return MemoryLedgerStore()
    for suffix in ("", "-wal", "-shm"):  # a rerun into the same folder starts a fresh ledger
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            stale.unlink()
    return SQLiteStore(path)


def _write(out, day) -> None:
    from market.te.auction.simulation import BALANCE_COLUMNS, INTERVAL_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS

    out.write_csv("orders.csv", ORDER_COLUMNS, day.orders)
    out.write_csv("trades.csv", TRADE_COLUMNS, day.trades)
    out.write_csv("intervals.csv", INTERVAL_COLUMNS, day.intervals)
    out.write_csv("balances.csv", BALANCE_COLUMNS, day.balances)


def _figures(out, cfg, day) -> None:
    from market.te.auction.interval import GRID

    p2p = [t for t in day.trades if GRID not in (t[2], t[3])]
    p2p_wh = sum(t[6] for t in p2p)
    value = sum(t[7] * t[9] for t in p2p)  # delivered x seller price, ntok
    delivered = sum(t[7] for t in p2p)
    f = out.figure
    f("participants", cfg.participants)
    f("intervals", cfg.intervals)
    f("orders", len(day.orders))
    f("trades", len(day.trades))
    f("p2p_energy_wh", p2p_wh, "Wh")
    f("p2p_delivered_wh", delivered, "Wh")
    f("grid_sold_wh", sum(r[5] + r[7] for r in day.intervals), "Wh")
    f("grid_bought_wh", sum(r[6] + r[8] for r in day.intervals), "Wh")
    f("mean_p2p_price_usd_per_mwh", round(value / delivered / 1000, 3) if delivered else 0.0, "USD/MWh")
    f("network_charges_ntok", sum(r[11] for r in day.intervals), "ntok")
    f("operator_surplus_ntok", sum(r[12] for r in day.intervals), "ntok")
    f("minted_ntok", day.totals["minted_ntok"], "ntok")
    f("burned_ntok", day.totals["burned_ntok"], "ntok")
    f("periodic_burned_ntok", day.totals["periodic_burned_ntok"], "ntok")
    f("conservation_gap_ntok", day.totals["conservation_gap_ntok"], "ntok")
    f("ledger_entries", day.totals["ledger_entries"])
    f("checkpoints", day.totals["checkpoints"])
    f("ledger_ok", day.report.ok)


def _print(out, day) -> None:
    width = max(len(k) for k in out.figures)
    for name, value in out.figures.items():
        unit = out.units.get(name, "")
        print(f"{name:<{width}}  {value} {unit}".rstrip())
    print(day.report.describe())
    if out.enabled:
        print(f"wrote {', '.join(sorted(set(out.files) | {'summary.json'}))} to {out.out_dir}")
