"""Continuous double auction: hand-computed scenario, naive reference book, invariants."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from market.te.auction.errors import BookError, OrderError
from market.te.auction.model import Order
from market.te.auction.order_book import OrderBook


def o(oid, side, price, qty, interval=0):
    return Order(oid, f"p-{oid}", side, interval, qty, price)


def test_price_time_priority_partial_fills_cancel_and_immediate_reports():
    reported = []
    book = OrderBook(0, on_trade=reported.append)
    assert book.submit(o("s1", "sell", 120, 50)) == []
    assert book.submit(o("s2", "sell", 110, 30)) == []
    assert book.submit(o("s3", "sell", 110, 40)) == []  # same price as s2, later
    # buy 100 @ 115 takes s2 (110, first in time) 30, then s3 (110) 40; 30 left rests at 115
    trades = book.submit(o("b1", "buy", 115, 100))
    assert [(t.sell_order_id, t.qty_wh, t.price_uusd_per_kwh) for t in trades] == [("s2", 30, 110), ("s3", 40, 110)]
    assert reported == trades  # reported immediately, in order
    assert book.best_bid_uusd_per_kwh() == 115 and book.best_ask_uusd_per_kwh() == 120
    # a sell at 100 hits the resting bid at the bid's price 115
    trades = book.submit(o("s4", "sell", 100, 10))
    assert [(t.buy_order_id, t.qty_wh, t.price_uusd_per_kwh, t.aggressor) for t in trades] == [("b1", 10, 115, "sell")]
    assert book.remaining_wh("b1") == 20
    assert book.cancel("b1") == 20
    with pytest.raises(BookError, match="no such resting order"):
        book.cancel("b1")
    assert book.best_bid_uusd_per_kwh() is None
    assert book.submit(o("b2", "buy", 200, 60))[0].sell_order_id == "s1"
    assert book.depth_wh() == (10, 0)


def test_bad_orders_are_refused_by_name():
    book = OrderBook(3)
    with pytest.raises(BookError, match="interval"):
        book.submit(o("x", "buy", 1, 1, interval=2))
    with pytest.raises(OrderError, match="qty_wh"):
        book.submit(o("y", "buy", 1, 0, interval=3))
    book.submit(o("z", "buy", 1, 1, interval=3))
    with pytest.raises(BookError, match="duplicate"):
        book.submit(o("z", "sell", 1, 1, interval=3))


class NaiveBook:
    """Reference: lists scanned linearly for the best (price, arrival) each time."""

    def __init__(self):
        self.resting = []  # [order, remaining, arrival]
        self.arrival = 0
        self.trades = []

    def submit(self, order):
        is_buy = order.side == "buy"
        remaining = order.qty_wh
        while remaining:
            opp = [r for r in self.resting if r[0].side != order.side and r[1] > 0]
            if not opp:
                break
            best = min(opp, key=lambda r: ((r[0].price_uusd_per_kwh if is_buy else -r[0].price_uusd_per_kwh), r[2]))
            p = best[0].price_uusd_per_kwh
            if (is_buy and p > order.price_uusd_per_kwh) or (not is_buy and p < order.price_uusd_per_kwh):
                break
            q = min(remaining, best[1])
            self.trades.append((order.order_id, best[0].order_id, q, p))
            best[1] -= q
            remaining -= q
        if remaining:
            self.arrival += 1
            self.resting.append([order, remaining, self.arrival])

    def cancel(self, oid):
        for r in self.resting:
            if r[0].order_id == oid and r[1] > 0:
                r[1] = 0
                return True
        return False


ops = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.booleans(), st.integers(1, 10), st.integers(1, 20)),
    st.tuples(st.just("cancel"), st.integers(0, 40))), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_matches_naive_book_and_never_rests_crossed(script):
    book, ref = OrderBook(0), NaiveBook()
    n = 0
    for op in script:
        if op[0] == "submit":
            order = o(f"o{n}", "buy" if op[1] else "sell", op[2], op[3])
            n += 1
            trades = book.submit(order)
            ref.submit(order)
            for t in trades:  # nobody trades beyond its limit
                assert t.price_uusd_per_kwh <= (order.price_uusd_per_kwh if op[1] else 10**9)
                assert t.price_uusd_per_kwh >= (order.price_uusd_per_kwh if not op[1] else 0)
        else:
            oid = f"o{op[1]}"
            expected = ref.cancel(oid)
            if expected:
                book.cancel(oid)
            else:
                with pytest.raises(BookError):
                    book.cancel(oid)
        bid, ask = book.best_bid_uusd_per_kwh(), book.best_ask_uusd_per_kwh()
        assert bid is None or ask is None or bid < ask
    got = [((t.buy_order_id if t.aggressor == "buy" else t.sell_order_id),
            (t.sell_order_id if t.aggressor == "buy" else t.buy_order_id), t.qty_wh, t.price_uusd_per_kwh)
           for t in book.trades]
    assert got == ref.trades
