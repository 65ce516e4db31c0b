"""LEM-to-LEM exchange: two local markets trade through an interface with a capacity limit.

Per interval, in three stages:
  1. each market clears its own orders (call auction, `AuctionConfig`);
  2. the residual (unfilled) asks of one market meet the residual bids of the other in a call
     auction whose volume is capped by the interface: first A->B up to `capacity_wh`, then B->A
     up to capacity_wh + flow(A->B) (counter-flow nets, so |net flow| <= capacity);
  3. optionally, each market's remaining residuals clear against its grid of last resort.
Each exchange is a uniform-price auction of its own, so nobody trades beyond its limit and the
exchange is budget-balanced.  This is sequential coupling (local first), not a joint optimum:
it never lowers any local market's welfare, but can miss gains a joint clearing would find.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from market.te.auction.call_auction import AuctionConfig, ClearingResult, clear
from market.te.auction.errors import AuctionError
from market.te.auction.interval import GridOfLastResort, IntervalResult, Trade, clear_interval, pair_trades
from market.te.auction.model import BUY, SELL, Order, OrderArrays


@dataclass(frozen=True)
class Interface:
    market_a: str
    market_b: str
    capacity_wh: int

    def __post_init__(self) -> None:
        if self.capacity_wh < 0:
            raise AuctionError(f"interface {self.market_a}-{self.market_b}: capacity_wh must be >= 0")


@dataclass
class ExchangeResult:
    local_a: IntervalResult
    local_b: IntervalResult
    exchange_trades: list[Trade]
    flow_a_to_b_wh: int
    flow_b_to_a_wh: int
    grid_a: IntervalResult | None = None
    grid_b: IntervalResult | None = None

    @property
    def net_flow_a_to_b_wh(self) -> int:
        return self.flow_a_to_b_wh - self.flow_b_to_a_wh


def residual_orders(orders: list[Order], filled: dict[str, int]) -> list[Order]:
    return [replace(o, qty_wh=o.qty_wh - filled.get(o.order_id, 0)) for o in orders
            if o.qty_wh - filled.get(o.order_id, 0) > 0]


def _capped(asks: list[Order], bids: list[Order], cap_wh: int, cfg: AuctionConfig, interval: int) -> tuple[list[Trade], dict[str, int]]:
    """Clear `asks` of one market against `bids` of the other, volume <= cap_wh."""
    book = [o for o in asks if o.side == SELL] + [o for o in bids if o.side == BUY]
    if not book or cap_wh <= 0:
        return [], {}
    arrays = OrderArrays.from_orders(book)
    res: ClearingResult = clear(arrays, cfg)
    if res.volume_wh > cap_wh:  # re-clear with quantities truncated to the capped volume
        res = _truncate(arrays, cfg, cap_wh)
    trades = [Trade(interval, book[b].participant_id, book[s].participant_id, book[b].order_id, book[s].order_id,
                    int(q), res.buyer_price_uusd_per_kwh or 0, res.seller_price_uusd_per_kwh or 0)
              for b, s, q in pair_trades(arrays, res.fill_wh)]
    return trades, {o.order_id: int(f) for o, f in zip(book, res.fill_wh) if f}


def _truncate(arrays: OrderArrays, cfg: AuctionConfig, cap_wh: int) -> ClearingResult:
    """Keep, on each side, only the first cap_wh Wh in priority order, then clear again.

    The marginal orders become the ones holding the cap-th Wh: the price still lies between
    an accepted bid and ask, so limits are respected."""
    qty = arrays.qty.copy()
    for buy in (True, False):
        idx = np.flatnonzero(arrays.is_buy == buy)
        price = arrays.price[idx]
        order = idx[np.lexsort((arrays.rank[idx], arrays.seq[idx], -price if buy else price))]
        cum = np.cumsum(qty[order])
        qty[order] = np.clip(cap_wh - (cum - qty[order]), 0, qty[order])
    keep = qty > 0
    sub = OrderArrays(arrays.is_buy[keep], arrays.price[keep], qty[keep], arrays.seq[keep], arrays.rank[keep])
    res = clear(sub, cfg)
    fill = np.zeros(len(arrays), dtype=np.int64)
    fill[np.flatnonzero(keep)] = res.fill_wh
    res.fill_wh = fill
    return res


def clear_exchange(interval: int, orders_a: list[Order], orders_b: list[Order], interface: Interface,
                   cfg: AuctionConfig = AuctionConfig(), grid_a: GridOfLastResort | None = None,
                   grid_b: GridOfLastResort | None = None) -> ExchangeResult:
    local_a, local_b = clear_interval(interval, orders_a, cfg), clear_interval(interval, orders_b, cfg)
    res_a = residual_orders(orders_a, local_a.fill_of())
    res_b = residual_orders(orders_b, local_b.fill_of())
    t_ab, f_ab = _capped(res_a, res_b, interface.capacity_wh, cfg, interval)
    flow_ab = sum(t.qty_wh for t in t_ab)
    res_a, res_b = residual_orders(res_a, f_ab), residual_orders(res_b, f_ab)
    t_ba, f_ba = _capped(res_b, res_a, interface.capacity_wh + flow_ab, cfg, interval)
    flow_ba = sum(t.qty_wh for t in t_ba)
    res_a, res_b = residual_orders(res_a, f_ba), residual_orders(res_b, f_ba)
    out = ExchangeResult(local_a, local_b, t_ab + t_ba, flow_ab, flow_ba)
    if grid_a is not None:
        out.grid_a = clear_interval(interval, res_a, cfg, grid_a)
    if grid_b is not None:
        out.grid_b = clear_interval(interval, res_b, cfg, grid_b)
    return out
