"""Continuous double auction: an order book with price-time priority, partial fills, cancels.

An incoming order matches against the best resting orders of the other side while prices cross
(buy price >= ask price); each match trades at the *resting* order's price for
min(remaining, resting remaining) Wh and is reported immediately (returned, and passed to the
`on_trade` callback).  What is left of the incoming order rests.  Time priority is the book's
own arrival counter, so replaying the same submissions gives the same trades.  Each side is a
binary heap with lazy deletion of filled/cancelled orders: O(log n) per submit, cancel O(1).
"""
from __future__ import annotations

import heapq
from typing import Callable, NamedTuple

from market.te.auction.errors import BookError
from market.te.auction.model import BUY, Order, validate_order


class BookTrade(NamedTuple):
    trade_seq: int
    interval: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str
    qty_wh: int
    price_uusd_per_kwh: int
    aggressor: str  # side of the incoming order


class OrderBook:
    def __init__(self, interval: int, on_trade: Callable[[BookTrade], None] | None = None) -> None:
        self.interval = interval
        self.on_trade = on_trade
        self._bids: list[tuple[int, int, str]] = []  # (-price, arrival, order_id)
        self._asks: list[tuple[int, int, str]] = []  # (price, arrival, order_id)
        self._live: dict[str, list] = {}  # order_id -> [remaining_wh, order]
        self._seen: set[str] = set()
        self._arrival = 0
        self._trade_seq = 0
        self.trades: list[BookTrade] = []

    def submit(self, order: Order) -> list[BookTrade]:
        """Validate, match, rest the remainder; returns the trades this order made."""
        validate_order(order)
        oid = order.order_id
        if order.interval != self.interval:
            raise BookError(f"order {oid!r}: interval {order.interval} != book interval {self.interval}")
        if oid in self._seen:
            raise BookError(f"order {oid!r}: duplicate order_id")
        self._seen.add(oid)
        is_buy = order.side == BUY
        book = self._asks if is_buy else self._bids
        limit = order.price_uusd_per_kwh
        live, trades, on_trade = self._live, self.trades, self.on_trade
        remaining = order.qty_wh
        made = []
        while remaining and book:
            key, _, rid = book[0]
            resting = live.get(rid)
            if resting is None:  # filled or cancelled earlier
                heapq.heappop(book)
                continue
            price = key if is_buy else -key
            if (price > limit) if is_buy else (price < limit):
                break
            qty = remaining if remaining < resting[0] else resting[0]
            other = resting[1]
            self._trade_seq += 1
            if is_buy:
                trade = BookTrade(self._trade_seq, self.interval, oid, rid, order.participant_id,
                                  other.participant_id, qty, price, order.side)
            else:
                trade = BookTrade(self._trade_seq, self.interval, rid, oid, other.participant_id,
                                  order.participant_id, qty, price, order.side)
            made.append(trade)
            trades.append(trade)
            if on_trade is not None:
                on_trade(trade)  # reported immediately
            remaining -= qty
            resting[0] -= qty
            if resting[0] == 0:
                del live[rid]
                heapq.heappop(book)
        if remaining:
            self._arrival += 1
            live[oid] = [remaining, order]
            heapq.heappush(self._bids if is_buy else self._asks, ((-limit if is_buy else limit), self._arrival, oid))
        return made

    def cancel(self, order_id: str) -> int:
        """Cancel a resting order; returns the Wh that were still open."""
        live = self._live.pop(order_id, None)
        if live is None:
            raise BookError(f"cancel {order_id!r}: no such resting order (unknown, filled or cancelled)")
        return live[0]

    def _best(self, book: list) -> tuple[int, str] | None:
        while book and book[0][2] not in self._live:
            heapq.heappop(book)
        return (book[0][0], book[0][2]) if book else None

    def best_bid_uusd_per_kwh(self) -> int | None:
        best = self._best(self._bids)
        return -best[0] if best else None

    def best_ask_uusd_per_kwh(self) -> int | None:
        best = self._best(self._asks)
        return best[0] if best else None

    def remaining_wh(self, order_id: str) -> int:
        live = self._live.get(order_id)
        return live[0] if live else 0

    def depth_wh(self) -> tuple[int, int]:
        """(open bid Wh, open ask Wh)."""
        bid = sum(v[0] for v in self._live.values() if v[1].side == BUY)
        return bid, sum(v[0] for v in self._live.values()) - bid
