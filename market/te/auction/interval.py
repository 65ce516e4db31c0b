"""One interval of the P2P market: peers' orders + the grid as buyer/seller of last resort,
cleared by the call auction, with the allocation turned into bilateral trades.

The grid sells any quantity at its sell price (retail tariff or the LEM price at the point of
common coupling) and buys any quantity at its buy price (feed-in tariff or LEM price): it enters
the auction as one ask and one bid, last in time priority, so peers trade with each other first
and with the grid only when the grid's price is better.  Requires buy <= sell price.

Pairing: a uniform-price pool has no natural counterparty, but settlement and network charges
need one; buyers and sellers are zipped in priority order (the k-th Wh bought is the k-th Wh
sold), which is deterministic and gives at most (buyers + sellers - 1) trades.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.te.auction.call_auction import AuctionConfig, ClearingResult, clear, side_order
from market.te.auction.errors import AuctionError
from market.te.auction.model import BUY, SELL, Order, OrderArrays, validate_order
from market.te.auction.prices import PriceLookup, location_key, price_uusd_per_kwh

GRID = "grid"


@dataclass(frozen=True)
class GridOfLastResort:
    """Prices at which the grid sells to / buys from the community, looked up at `location`."""

    sell_lookup: PriceLookup
    buy_lookup: PriceLookup
    location: str = "pcc"

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", location_key(self.location, "grid of last resort"))

    def prices(self, interval: int) -> tuple[int, int]:
        sell = price_uusd_per_kwh(self.sell_lookup, self.location, interval)
        buy = price_uusd_per_kwh(self.buy_lookup, self.location, interval)
        if buy > sell:
            raise AuctionError(f"grid interval {interval}: buy price {buy} > sell price {sell} uUSD/kWh (arbitrage)")
        return sell, buy


@dataclass(frozen=True)
class Trade:
    """Energy `qty_wh` from seller to buyer; the buyer pays buyer_price, the seller receives seller_price."""

    interval: int
    buyer_id: str
    seller_id: str
    buy_order_id: str
    sell_order_id: str
    qty_wh: int
    buyer_price_uusd_per_kwh: int
    seller_price_uusd_per_kwh: int


@dataclass
class IntervalResult:
    interval: int
    orders: list[Order]
    result: ClearingResult
    trades: list[Trade]
    grid_sold_wh: int
    grid_bought_wh: int

    def fill_of(self) -> dict[str, int]:
        return {o.order_id: int(f) for o, f in zip(self.orders, self.result.fill_wh)}


def grid_orders(interval: int, orders: list[Order], grid: GridOfLastResort) -> list[Order]:
    sell, buy = grid.prices(interval)
    demand = sum(o.qty_wh for o in orders if o.side == BUY)
    supply = sum(o.qty_wh for o in orders if o.side == SELL)
    seq = max((o.seq for o in orders), default=0) + 1
    out = []
    if demand:
        out.append(Order(f"{GRID}:sell:{interval}", GRID, SELL, interval, demand, sell, seq))
    if supply:
        out.append(Order(f"{GRID}:buy:{interval}", GRID, BUY, interval, supply, buy, seq))
    return out


def pair_trades(arrays: OrderArrays, fill: np.ndarray) -> list[tuple[int, int, int]]:
    """Zip buy fills with sell fills in priority order -> [(buy index, sell index, qty_wh)]."""
    bids, asks = side_order(arrays, True), side_order(arrays, False)
    bids, asks = bids[fill[bids] > 0], asks[fill[asks] > 0]
    if bids.size == 0:
        return []
    cb, ca = np.cumsum(fill[bids]), np.cumsum(fill[asks])
    if cb[-1] != ca[-1]:
        raise AuctionError(f"pairing: bought {cb[-1]} Wh != sold {ca[-1]} Wh")
    points = np.unique(np.concatenate((cb, ca)))
    qty = np.diff(points, prepend=0)
    bi = bids[np.searchsorted(cb, points, side="left")]
    ai = asks[np.searchsorted(ca, points, side="left")]
    return list(zip(bi.tolist(), ai.tolist(), qty.tolist()))


def clear_interval(interval: int, orders: list[Order], cfg: AuctionConfig = AuctionConfig(),
                   grid: GridOfLastResort | None = None) -> IntervalResult:
    """Validate, add the grid's orders, clear, and pair the fills into trades."""
    for order in orders:
        validate_order(order)
        if order.interval != interval:
            raise AuctionError(f"order {order.order_id!r}: interval {order.interval} != {interval}")
    book = list(orders) + (grid_orders(interval, orders, grid) if grid is not None else [])
    arrays = OrderArrays.from_orders(book)
    res = clear(arrays, cfg)
    trades = []
    buyer_price, seller_price = res.buyer_price_uusd_per_kwh or 0, res.seller_price_uusd_per_kwh or 0  # set when trading
    for b, s, q in pair_trades(arrays, res.fill_wh):
        trades.append(Trade(interval, book[b].participant_id, book[s].participant_id, book[b].order_id,
                            book[s].order_id, int(q), buyer_price, seller_price))
    grid_sold = sum(t.qty_wh for t in trades if t.seller_id == GRID)
    grid_bought = sum(t.qty_wh for t in trades if t.buyer_id == GRID)
    return IntervalResult(interval, book, res, trades, grid_sold, grid_bought)
