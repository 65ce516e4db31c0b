"""`colorgrid day`'s P2P stage: prosumers trade peer to peer (market/te, call auction) on the feeder's
buses, each trade charged DLMP(buyer) − DLMP(seller) from the day's own `dlmp.csv`, settled on a
signed ledger in `--out/ledger.sqlite`, then verified from the file alone (reopened, every hash and
signature checked) — what `colorgrid te run --dlmp-csv OUT/dlmp.csv` does, inside the day.

P2P intervals: 4 per market interval (15 min for hourly intervals); each maps to the market interval
covering it (`market.te.auction.prices.ResampledLookup`).
"""
from __future__ import annotations

P2P_PER_MARKET_INTERVAL = 4


class P2PFailed(RuntimeError):
    """The P2P market or its ledger failed (one line)."""


def run_p2p(out, participants: int, market_intervals: int, seed: int) -> None:
    """Trade, settle, write p2p_*.csv and ledger.sqlite into `out` (a RunOutput), verify, add figures."""
    from market.settlement.errors import SettlementError
    from market.settlement.sqlite_store import SQLiteStore
    from market.settlement.verify import verify_ledger
    from market.te.auction.errors import TeError
    from market.te.auction.interval import GRID
    from market.te.auction.prices import TablePriceLookup
    from market.te.auction.simulation import (BALANCE_COLUMNS, INTERVAL_COLUMNS, ORDER_COLUMNS, TRADE_COLUMNS,
                                              SimConfig, run_day)

    path = out.path("ledger.sqlite")
    for suffix in ("", "-wal", "-shm"):                  # a rerun into the same folder starts a fresh ledger
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            stale.unlink()
    try:
        prices = TablePriceLookup.from_dlmp_csv(out.out_dir / "dlmp.csv")
        cfg = SimConfig(participants, P2P_PER_MARKET_INTERVAL * market_intervals, seed, charges="dlmp")
        store = SQLiteStore(path)
        try:
            day = run_day(cfg, store, prices)
        finally:
            store.close()
        reopened = SQLiteStore(path)
        try:
            report = verify_ledger(reopened)
        finally:
            reopened.close()
    except (TeError, SettlementError, ValueError, OSError) as exc:
        raise P2PFailed(f"P2P stage: {' '.join(str(exc).split())}") from None
    out.write_csv("p2p_orders.csv", ORDER_COLUMNS, day.orders)
    out.write_csv("p2p_trades.csv", TRADE_COLUMNS, day.trades)
    out.write_csv("p2p_intervals.csv", INTERVAL_COLUMNS, day.intervals)
    out.write_csv("p2p_balances.csv", BALANCE_COLUMNS, day.balances)
    p2p = [t for t in day.trades if GRID not in (t[2], t[3])]
    f = out.figure
    f("p2p_participants", participants)
    f("p2p_intervals", cfg.intervals)
    f("p2p_trades", len(p2p))
    f("p2p_energy_wh", sum(t[6] for t in p2p), "Wh")
    f("p2p_delivered_wh", sum(t[7] for t in p2p), "Wh")
    f("p2p_network_charges_usd", sum(r[11] for r in day.intervals) / 1e9, "USD")
    f("p2p_conservation_gap_ntok", day.totals["conservation_gap_ntok"], "ntok")
    f("p2p_ledger_entries", report.entries_checked)
    f("p2p_ledger_checkpoints", report.checkpoints_checked)
    f("p2p_ledger_ok", bool(report.ok and day.report.ok))
    if not report.ok:
        raise P2PFailed(f"P2P ledger does not verify: {report.describe()}")
