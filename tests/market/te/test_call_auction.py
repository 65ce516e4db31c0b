"""Call double auction: hand-computed cases, cross-check against the pure-Python walk, properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from market.te.auction.call_auction import AuctionConfig, clear
from market.te.auction.errors import AuctionError, OrderError
from market.te.auction.model import Order, OrderArrays
from market.te.auction.reference import clear_walk

CONFIGS = [AuctionConfig(k, 2, tb, mech) for k in (0, 1, 2) for tb in ("time", "pro_rata")
           for mech in ("uniform", "mcafee")]


def book(rows):
    """rows: (id, side, price, qty, seq)."""
    return [Order(i, f"p-{i}", side, 0, qty, price, seq) for i, side, price, qty, seq in rows]


def run(orders, cfg=AuctionConfig()):
    arr = OrderArrays.from_orders(orders)
    res = clear(arr, cfg)
    return {o.order_id: int(f) for o, f in zip(orders, res.fill_wh)}, res


def test_hand_computed_midpoint_partial_fill():
    # bids 300x100, 250x50; asks 100x80, 260x100.  0-80 Wh: 300>=100; 80-100: 300>=260;
    # 100-150: 250<260 -> Q=100, marginal bid 300, marginal ask 260, midpoint 280.
    orders = book([("b1", "buy", 300, 100, 0), ("b2", "buy", 250, 50, 1),
                   ("s1", "sell", 100, 80, 2), ("s2", "sell", 260, 100, 3)])
    fills, res = run(orders)
    assert fills == {"b1": 100, "b2": 0, "s1": 80, "s2": 20}
    assert (res.volume_wh, res.price_uusd_per_kwh) == (100, 280)
    assert run(orders, AuctionConfig(0, 1))[1].price_uusd_per_kwh == 260  # k=0: sellers' price
    assert run(orders, AuctionConfig(1, 1))[1].price_uusd_per_kwh == 300  # k=1: buyers' price


def test_hand_computed_time_priority_and_pro_rata():
    # one ask 90 Wh at 100; three bids at 200 (60, 30, 30 Wh).  Time priority: a(seq 0) 60,
    # b(seq 1) 30, c 0.  Pro rata: 90 * (60, 30, 30) / 120 = 45, 22.5, 22.5 -> 45, 23 (b: id
    # breaks the remainder tie), 22.
    orders = book([("c", "buy", 200, 30, 2), ("a", "buy", 200, 60, 0), ("b", "buy", 200, 30, 1),
                   ("s", "sell", 100, 90, 3)])
    fills, _ = run(orders)
    assert fills == {"a": 60, "b": 30, "c": 0, "s": 90}
    fills, _ = run(orders, AuctionConfig(tie_break="pro_rata"))
    assert fills == {"a": 45, "b": 23, "c": 22, "s": 90}


def test_hand_computed_mcafee_both_cases():
    # unit orders: bids 10, 8, 6, 1; asks 2, 4, 7, 9.  Efficient: 2 trades (8>=4, 6<7).
    # p0 = (6 + 7) // 2 = 6 lies within [a_m=4, b_m=8] -> both efficient trades clear at 6.
    orders = book([("b10", "buy", 10, 1, 0), ("b8", "buy", 8, 1, 1), ("b6", "buy", 6, 1, 2),
                   ("b1", "buy", 1, 1, 3), ("s2", "sell", 2, 1, 4), ("s4", "sell", 4, 1, 5),
                   ("s7", "sell", 7, 1, 6), ("s9", "sell", 9, 1, 7)])
    fills, res = run(orders, AuctionConfig(mechanism="mcafee"))
    assert res.volume_wh == 2 and res.price_uusd_per_kwh == 6 and not res.reduced
    # bids 10, 8, 1; asks 2, 4, 20 -> p0 = (1 + 20) // 2 = 10 > b_m = 8: reduce to
    # one trade, buyer pays 8, seller gets 4, operator keeps 4 uUSD/kWh x 1 Wh.
    orders = book([("b10", "buy", 10, 1, 0), ("b8", "buy", 8, 1, 1), ("b1", "buy", 1, 1, 2),
                   ("s2", "sell", 2, 1, 3), ("s4", "sell", 4, 1, 4), ("s20", "sell", 20, 1, 5)])
    fills, res = run(orders, AuctionConfig(mechanism="mcafee"))
    assert res.reduced and res.volume_wh == 1
    assert fills == {"b10": 1, "b8": 0, "b1": 0, "s2": 1, "s4": 0, "s20": 0}
    assert (res.buyer_price_uusd_per_kwh, res.seller_price_uusd_per_kwh, res.operator_surplus_ntok) == (8, 4, 4)


def test_no_crossing_means_no_trade_and_empty_sides():
    fills, res = run(book([("b", "buy", 100, 10, 0), ("s", "sell", 101, 10, 1)]))
    assert res.volume_wh == 0 and res.price_uusd_per_kwh is None and fills == {"b": 0, "s": 0}
    assert run(book([("b", "buy", 100, 10, 0)]))[1].volume_wh == 0
    assert run([])[1].volume_wh == 0


def test_bad_input_is_named():
    with pytest.raises(OrderError, match="duplicate order_id"):
        OrderArrays.from_orders(book([("x", "buy", 1, 1, 0), ("x", "sell", 1, 1, 1)]))
    with pytest.raises(OrderError, match="qty_wh"):
        OrderArrays([True], [1], [0], [0])
    with pytest.raises(AuctionError, match="k-rule"):
        AuctionConfig(3, 2)
    with pytest.raises(AuctionError, match="tie_break"):
        AuctionConfig(tie_break="random")


order_rows = st.lists(st.tuples(st.booleans(), st.integers(1, 12), st.integers(1, 40)), min_size=0, max_size=30)


def make(rows, seqs=None):
    seqs = seqs if seqs is not None else list(range(len(rows)))
    return [Order(f"o{i:02d}", f"p{i}", "buy" if b else "sell", 0, q, p, s)
            for i, ((b, p, q), s) in enumerate(zip(rows, seqs))]


@settings(max_examples=150, deadline=None)
@given(order_rows, st.sampled_from(CONFIGS))
def test_matches_pure_python_walk(rows, cfg):
    orders = make(rows)
    fills, res = run(orders, cfg)
    ref_fills, vol, bp, sp, surplus = clear_walk(
        [(o.order_id, o.side == "buy", o.price_uusd_per_kwh, o.qty_wh, o.seq) for o in orders], cfg)
    assert fills == ref_fills
    assert (res.volume_wh, res.buyer_price_uusd_per_kwh, res.seller_price_uusd_per_kwh, res.operator_surplus_ntok) == (vol, bp, sp, surplus)


@settings(max_examples=150, deadline=None)
@given(order_rows, st.sampled_from(CONFIGS))
def test_properties(rows, cfg):
    orders = make(rows)
    fills, res = run(orders, cfg)
    buys = [o for o in orders if o.side == "buy"]
    sells = [o for o in orders if o.side == "sell"]
    for o in orders:
        assert 0 <= fills[o.order_id] <= o.qty_wh
        if fills[o.order_id]:  # nobody trades beyond its limit price
            if o.side == "buy":
                assert res.buyer_price_uusd_per_kwh <= o.price_uusd_per_kwh
            else:
                assert res.seller_price_uusd_per_kwh >= o.price_uusd_per_kwh
    bought = sum(fills[o.order_id] for o in buys)
    sold = sum(fills[o.order_id] for o in sells)
    assert bought == sold == res.volume_wh  # cleared supply == cleared demand
    if res.volume_wh:
        paid = bought * res.buyer_price_uusd_per_kwh
        received = sold * res.seller_price_uusd_per_kwh
        assert paid - received == res.operator_surplus_ntok >= 0  # budget balance / surplus reported
        if cfg.mechanism == "uniform":
            assert res.operator_surplus_ntok == 0
    if cfg.mechanism == "uniform":  # efficiency: no crossing left among residuals
        rb = [o.price_uusd_per_kwh for o in buys if fills[o.order_id] < o.qty_wh]
        ra = [o.price_uusd_per_kwh for o in sells if fills[o.order_id] < o.qty_wh]
        if rb and ra:
            assert max(rb) < min(ra)


@settings(max_examples=100, deadline=None)
@given(order_rows, st.randoms(use_true_random=False), st.sampled_from(["uniform", "mcafee"]))
def test_pro_rata_independent_of_arrival_order(rows, rnd, mech):
    cfg = AuctionConfig(tie_break="pro_rata", mechanism=mech)
    orders = make(rows)
    seqs = list(range(len(rows)))
    rnd.shuffle(seqs)
    shuffled = make(rows, seqs)
    perm = list(range(len(rows)))
    rnd.shuffle(perm)
    shuffled = [shuffled[i] for i in perm]  # different arrival seq and a different list order
    assert run(orders, cfg)[0] == run(shuffled, cfg)[0]


def test_large_random_book_matches_walk():
    rng = np.random.default_rng(7)
    n = 20_000
    is_buy = rng.random(n) < 0.5
    price = rng.integers(50_000, 300_000, n)
    qty = rng.integers(1, 5_000, n)
    arr = OrderArrays(is_buy, price, qty, np.arange(n))
    orders = [(f"{i:06d}", bool(is_buy[i]), int(price[i]), int(qty[i]), i) for i in range(n)]
    for cfg in (AuctionConfig(), AuctionConfig(tie_break="pro_rata", mechanism="mcafee")):
        res = clear(arr, cfg)
        ref, vol, bp, sp, _ = clear_walk(orders, cfg)
        assert res.volume_wh == vol and res.buyer_price_uusd_per_kwh == bp and res.seller_price_uusd_per_kwh == sp
        assert res.fill_wh.tolist() == [ref[f"{i:06d}"] for i in range(n)]
