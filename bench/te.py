"""Bench of the transactive market and its ledger (one command: `python -m bench.te [--json PATH]`).

Figures (targets from issue 7):
  call auction, 100k orders in one interval: vectorized clearing orders/s (>= 50k/s) vs a
      pure-Python sort-and-walk clearing of the same orders in the same process (the baseline);
  continuous order book: orders/s through price-time matching (>= 20k/s) vs a sorted-list book;
  ledger: the figures of `bench.ledger` (issue 20 targets: signed appends >= 30k/s against the
      straightforward per-entry loop and the raw Ed25519 + SHA-256 floor; verification >= 12k
      entries/s per process against the raw verification floor; a 100k-entry checkpoint <= 0.5 s;
      PostgreSQL within 2x with --pg DSN).
"""
from __future__ import annotations

import argparse
import bisect
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import ledger as bench_ledger
from bench._report import Report
from market.te.auction.call_auction import AuctionConfig, clear
from market.te.auction.model import Order, OrderArrays, validate_order
from market.te.auction.order_book import OrderBook
from market.te.auction.reference import clear_walk


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def random_book(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    is_buy = rng.random(n) < 0.5
    price = np.where(is_buy, rng.integers(80_000, 260_000, n), rng.integers(40_000, 220_000, n))
    qty = rng.integers(100, 5_000, n)
    return is_buy, price, qty


def bench_call_auction(rep: Report, n: int) -> None:
    is_buy, price, qty = random_book(n)
    arrays = OrderArrays(is_buy, price, qty, np.arange(n))
    fast = best_of(lambda: clear(arrays, AuctionConfig()), 3)
    fast_pr = best_of(lambda: clear(arrays, AuctionConfig(tie_break="pro_rata", mechanism="mcafee")), 3)
    rows = [(f"{i:07d}", bool(is_buy[i]), int(price[i]), int(qty[i]), i) for i in range(n)]
    slow = best_of(lambda: clear_walk(rows, AuctionConfig()), 1)
    check, ref = clear(arrays, AuctionConfig()), clear_walk(rows, AuctionConfig())
    assert check.volume_wh == ref[1] and check.price_uusd_per_kwh == ref[2], "vectorized != walk"
    rep.figure("call_auction_orders", n, "orders")
    rep.figure("call_auction_orders_per_s", n / fast, "orders/s", target=">= 50000")
    rep.figure("call_auction_pro_rata_mcafee_orders_per_s", n / fast_pr, "orders/s")
    rep.figure("call_auction_walk_baseline_orders_per_s", n / slow, "orders/s", note="pure-Python sort-and-walk")
    rep.ratio("call_auction_speedup_vs_walk", slow, fast)


class SortedListBook:
    """Baseline: each side a sorted Python list (bisect.insort), best at the front; same per-order
    work as OrderBook (validation, trade records), a different data structure."""

    def __init__(self):
        self.bids, self.asks, self.arrival, self.trades = [], [], 0, []

    def submit(self, order: Order) -> None:
        validate_order(order)
        is_buy, price, qty = order.side == "buy", order.price_uusd_per_kwh, order.qty_wh
        opp = self.asks if is_buy else self.bids
        while qty and opp:
            key, arr, rem, rid = opp[0]
            p = key if is_buy else -key
            if (is_buy and p > price) or (not is_buy and p < price):
                break
            q = min(qty, rem)
            qty -= q
            self.trades.append((order.order_id, rid, q, p))
            if q == rem:
                opp.pop(0)
            else:
                opp[0] = (key, arr, rem - q, rid)
        if qty:
            self.arrival += 1
            bisect.insort(self.bids if is_buy else self.asks, ((-price if is_buy else price), self.arrival, qty, order.order_id))


def _book_orders(n: int, deep: bool) -> list[Order]:
    """crossing: bid and ask prices overlap widely, most orders trade at once (shallow book);
    deep: bids below asks except every 10th order, which sweeps — the book holds ~n/2 orders."""
    rng = np.random.default_rng(2)
    is_buy = rng.random(n) < 0.5
    if deep:
        price = np.where(is_buy, rng.integers(40_000, 150_000, n), rng.integers(150_001, 260_000, n))
        sweep = np.arange(n) % 10 == 9
        price = np.where(sweep, np.where(is_buy, 260_000, 40_000), price)
    else:
        price = np.where(is_buy, rng.integers(80_000, 260_000, n), rng.integers(40_000, 220_000, n))
    qty = rng.integers(100, 5_000, n)
    return [Order(f"o{i}", "p", "buy" if is_buy[i] else "sell", 0, int(qty[i]), int(price[i])) for i in range(n)]


def bench_order_book(rep: Report, n: int) -> None:
    def run(cls, orders):
        book = cls(0) if cls is OrderBook else cls()
        for o in orders:
            book.submit(o)
        return book

    for name, deep in (("crossing", False), ("deep", True)):
        orders = _book_orders(n, deep)
        fast = best_of(lambda: run(OrderBook, orders), 2)
        slow = best_of(lambda: run(SortedListBook, orders), 1)
        trades = len(run(OrderBook, orders).trades)
        assert trades == len(run(SortedListBook, orders).trades), "order book and baseline disagree"
        rep.figure(f"order_book_{name}_orders_per_s", n / fast, "orders/s", target=">= 20000", note=f"{trades} trades")
        rep.figure(f"order_book_{name}_sorted_list_baseline_orders_per_s", n / slow, "orders/s",
                   note="bisect.insort lists")
        rep.ratio(f"order_book_{name}_speedup_vs_sorted_list", slow, fast)


def _colorgrid(*args: str) -> float:
    """Run one `colorgrid` command in a child process (as a user would); its wall time in s."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "colorgrid", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench.te: colorgrid {' '.join(args[:3])} failed: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - t0


def bench_communities(rep: Report, communities: int, participants: int, intervals: int) -> None:
    """Issue 20 target: `te run --communities N` (N sidechains + the main chain, every ledger
    verified, exchange pairs, supply and main-chain records cross-checked by the command), then the
    main chain anchored in the EVM contract (in-process py-evm) with a sidechain checked through
    it (the te run has already checked every sidechain against the main chain). Baseline: the same communities run one by one as plain `te run`s (no exchange, no main
    chain) — the ratio is what the cross-chain layer costs."""
    with tempfile.TemporaryDirectory(prefix="bench-te-") as tmp:
        run = ["te", "run", "--participants", str(participants), "--intervals", str(intervals)]
        t_multi = _colorgrid(*run, "--communities", str(communities), "--out", os.path.join(tmp, "multi"))
        ledgers = sorted(glob.glob(os.path.join(tmp, "multi", "**", "*.sqlite"), recursive=True))
        main = [p for p in ledgers if "main" in os.path.basename(p)]
        sides = [p for p in ledgers if p not in main]
        if len(main) != 1 or len(sides) != communities:
            raise SystemExit(f"bench.te: expected 1 main chain and {communities} sidechains, found {ledgers}")
        t_anchor = 0.0
        try:
            import market.settlement.evm  # noqa: F401  (extra [evm])
            t_anchor = _colorgrid("ledger", "anchor", sides[0], "--main", main[0])
        except ImportError:
            rep.figure("communities_anchor_skipped", 1, "", note="extra [evm] not installed")
        t_single = sum(_colorgrid(*run, "--seed", str(c), "--out", os.path.join(tmp, f"single{c}"))
                       for c in range(communities))
    note = f"{communities} communities x {participants} participants x {intervals} intervals"
    rep.figure("communities_te_run_s", t_multi, "s", note=note + ", every ledger verified and cross-checked")
    if t_anchor:
        rep.figure("communities_anchor_and_check_s", t_anchor, "s", note="main chain anchored (in-process py-evm, deploy included), community 0 checked through it")
        rep.figure("communities_total_s", t_multi + t_anchor, "s", note=note + ", anchored and cross-verified")
    rep.figure("communities_separate_te_runs_s", t_single, "s", note="baseline: the same communities as separate plain te runs")
    rep.ratio("communities_cost_vs_separate_runs", t_multi, t_single)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.te")
    parser.add_argument("--orders", type=int, default=100_000, help="orders in the call auction / order book")
    parser.add_argument("--communities", type=int, default=4, help="sidechains of the te run --communities figure (0: skip)")
    parser.add_argument("--community-participants", type=int, default=200, help="participants per community")
    parser.add_argument("--community-intervals", type=int, default=96, help="intervals of the communities run")
    bench_ledger.add_arguments(parser)
    rep = Report("te", argv, parser)
    args = rep.args
    bench_call_auction(rep, args.orders)
    bench_order_book(rep, args.orders)
    bench_ledger.run(rep)
    if args.communities > 0:
        bench_communities(rep, args.communities, args.community_participants, args.community_intervals)
    rep.done()


if __name__ == "__main__":
    main()
