"""Call double auction for one interval: uniform price, k-rule, explicit per-order allocation.

Maths (integer units: Wh, uUSD/kWh).  Sort bids by (price desc, seq, id) and asks by (price
asc, seq, id); with cumulative quantities B(q) = price of the bid holding the q-th Wh and A(q)
likewise for asks, B is non-increasing and A non-decreasing, so the traded volume is

    Q = max { q : B(q) >= A(q) }      (checked only at the breakpoints of both step curves)

The marginal (least favourable accepted) bid b_m = B(Q) and ask a_m = A(Q) bound the uniform
price, chosen by the k-rule  p = a_m + floor(k (b_m - a_m)),  k = k_num / k_den in [0, 1]
(k = 1/2: midpoint; k = 1: buyers' price; k = 0: sellers' price).  Every accepted bid is >= b_m
>= p and every accepted ask <= a_m <= p: nobody trades beyond its limit.

Allocation: orders strictly better than the marginal price fill completely; the marginal price
level shares the remaining volume either in time priority (seq, then order id) or pro rata to
quantity (largest remainder, ties by order id — independent of arrival order).

McAfee trade reduction (truthful for single-unit traders): with the first excluded bid b' and
ask a', p0 = floor((b' + a') / 2); if a_m <= p0 <= b_m all efficient trades clear at p0.
Otherwise the marginal order (time mode) or marginal price level (pro-rata mode) on each side is
excluded, buyers pay b_m, sellers receive a_m, and the operator keeps (b_m - a_m) x volume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.te.auction.errors import AuctionError
from market.te.auction.model import OrderArrays

TIE_BREAKS = ("time", "pro_rata")
MECHANISMS = ("uniform", "mcafee")


@dataclass(frozen=True)
class AuctionConfig:
    """k = k_num/k_den places the price between the marginal ask (0) and bid (1)."""

    k_num: int = 1
    k_den: int = 2
    tie_break: str = "time"
    mechanism: str = "uniform"

    def __post_init__(self) -> None:
        if self.k_den <= 0 or not 0 <= self.k_num <= self.k_den:
            raise AuctionError(f"k-rule: need 0 <= k_num <= k_den, k_den > 0; got {self.k_num}/{self.k_den}")
        if self.tie_break not in TIE_BREAKS:
            raise AuctionError(f"tie_break must be one of {TIE_BREAKS}, got {self.tie_break!r}")
        if self.mechanism not in MECHANISMS:
            raise AuctionError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")


@dataclass
class ClearingResult:
    """Per-order fills (input order) and the prices; `operator_surplus_ntok` > 0 only under McAfee reduction."""

    fill_wh: np.ndarray
    volume_wh: int
    buyer_price_uusd_per_kwh: int | None
    seller_price_uusd_per_kwh: int | None
    marginal_bid_uusd_per_kwh: int | None = None
    marginal_ask_uusd_per_kwh: int | None = None
    reduced: bool = False
    operator_surplus_ntok: int = 0

    @property
    def price_uusd_per_kwh(self) -> int | None:
        """The uniform price (None if nothing traded or McAfee split the prices)."""
        return self.buyer_price_uusd_per_kwh if self.buyer_price_uusd_per_kwh == self.seller_price_uusd_per_kwh else None


def side_order(arrays: OrderArrays, buy: bool) -> np.ndarray:
    """Indices of one side sorted by price priority, then seq (time), then id rank."""
    idx = np.flatnonzero(arrays.is_buy == buy)
    price = arrays.price[idx]
    keys = (arrays.rank[idx], arrays.seq[idx], -price if buy else price)
    return idx[np.lexsort(keys)]


def efficient_volume(bid_price: np.ndarray, bid_cum: np.ndarray,
                     ask_price: np.ndarray, ask_cum: np.ndarray) -> tuple[int, int, int]:
    """(Q, marginal bid position, marginal ask position) for sorted sides; Q = 0 -> positions -1."""
    if bid_cum.size == 0 or ask_cum.size == 0 or bid_price[0] < ask_price[0]:
        return 0, -1, -1
    cap = min(int(bid_cum[-1]), int(ask_cum[-1]))
    points = np.concatenate((bid_cum, ask_cum))
    points = np.sort(points[points <= cap])
    if points.size == 0 or points[-1] != cap:
        points = np.append(points, cap)
    bi = np.searchsorted(bid_cum, points, side="left")
    ai = np.searchsorted(ask_cum, points, side="left")
    ok = bid_price[bi] >= ask_price[ai]
    n_ok = int(np.count_nonzero(ok))  # monotone: True ... True False ... False
    if n_ok == 0:
        # the first Wh crosses (checked above), so the first breakpoint segment trades
        raise AuctionError("clearing: crossing detected but no feasible breakpoint (internal)")
    last = n_ok - 1
    return int(points[last]), int(bi[last]), int(ai[last])


def _allocate(qty_sorted: np.ndarray, price_sorted: np.ndarray, rank_sorted: np.ndarray,
              volume: int, marginal_price: int, tie_break: str) -> np.ndarray:
    """Fills (sorted order) summing exactly to `volume`."""
    cum = np.cumsum(qty_sorted)
    if tie_break == "time" or volume == 0:
        return np.clip(volume - (cum - qty_sorted), 0, qty_sorted)
    level = price_sorted == marginal_price
    first = int(np.argmax(level))
    fill = np.zeros_like(qty_sorted)
    fill[:first] = qty_sorted[:first]  # strictly better prices precede the level
    remaining = volume - int(qty_sorted[:first].sum())
    if remaining <= 0:
        return fill
    lvl = np.flatnonzero(level)
    q = qty_sorted[lvl]
    total = int(q.sum())
    if remaining * int(q.max()) < 2**62:
        num = remaining * q
        base, rem = num // total, num % total
    else:  # exact big-integer path
        big = [remaining * int(x) for x in q]
        base = np.array([n // total for n in big], dtype=np.int64)
        rem = np.array([n % total for n in big], dtype=np.int64)
    left = remaining - int(base.sum())
    if left:
        order = np.lexsort((rank_sorted[lvl], -rem))[:left]  # largest remainder, then order id
        base = base.copy()
        base[order] += 1
    fill[lvl] = base
    return fill


def _price(ask: int, bid: int, cfg: AuctionConfig) -> int:
    return ask + (bid - ask) * cfg.k_num // cfg.k_den


def clear(arrays: OrderArrays, cfg: AuctionConfig = AuctionConfig()) -> ClearingResult:
    """Clear one interval's orders; fills are returned in the input order of `arrays`."""
    bids, asks = side_order(arrays, True), side_order(arrays, False)
    bp, bq, ap, aq = arrays.price[bids], arrays.qty[bids], arrays.price[asks], arrays.qty[asks]
    bcum, acum = np.cumsum(bq), np.cumsum(aq)
    volume, mb, ma = efficient_volume(bp, bcum, ap, acum)
    fill = np.zeros(len(arrays), dtype=np.int64)
    if volume == 0:
        return ClearingResult(fill, 0, None, None)
    b_m, a_m = int(bp[mb]), int(ap[ma])
    buyer_price = seller_price = _price(a_m, b_m, cfg)
    reduced = False
    if cfg.mechanism == "mcafee":
        b_next = _next_price(bp, mb, cfg.tie_break)
        a_next = _next_price(ap, ma, cfg.tie_break)
        p0 = None if b_next is None or a_next is None else (b_next + a_next) // 2
        if p0 is not None and a_m <= p0 <= b_m:
            buyer_price = seller_price = p0
        else:
            reduced = True
            nb = mb if cfg.tie_break == "time" else int(np.searchsorted(-bp, -b_m, side="left"))
            na = ma if cfg.tie_break == "time" else int(np.searchsorted(ap, a_m, side="left"))
            volume = min(int(bcum[nb - 1]) if nb else 0, int(acum[na - 1]) if na else 0)
            bp, bq, bids = bp[:nb], bq[:nb], bids[:nb]
            ap, aq, asks = ap[:na], aq[:na], asks[:na]
            buyer_price, seller_price = b_m, a_m
            if volume == 0:
                return ClearingResult(fill, 0, None, None, b_m, a_m, True, 0)
    fill[bids] = _allocate(bq, bp, arrays.rank[bids], volume, _marginal(bp, bq, volume), cfg.tie_break)
    fill[asks] = _allocate(aq, ap, arrays.rank[asks], volume, _marginal(ap, aq, volume), cfg.tie_break)
    surplus = volume * (buyer_price - seller_price)
    return ClearingResult(fill, volume, buyer_price, seller_price, int(b_m), int(a_m), reduced, surplus)


def _marginal(price_sorted: np.ndarray, qty_sorted: np.ndarray, volume: int) -> int:
    """Price of the order holding the `volume`-th Wh in priority order."""
    pos = int(np.searchsorted(np.cumsum(qty_sorted), volume, side="left"))
    return int(price_sorted[pos])


def _next_price(price_sorted: np.ndarray, marginal_pos: int, tie_break: str) -> int | None:
    """Price of the first order outside the efficient set (after the marginal order/level)."""
    if tie_break == "time":
        pos = marginal_pos + 1
    else:
        level = price_sorted[marginal_pos]
        pos = marginal_pos + 1
        while pos < len(price_sorted) and price_sorted[pos] == level:
            pos += 1
    return int(price_sorted[pos]) if pos < len(price_sorted) else None
