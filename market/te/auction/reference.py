"""Straightforward pure-Python call auction: sort with Python, walk both sides with two pointers.

Independent of the vectorized `call_auction.clear` (no numpy, no breakpoint search): the tests
cross-check the two, and `bench/te.py` uses this walk as the honest baseline.  Same rules:
price-time priority (seq, then order id), k-rule price between the marginal bid and ask,
pro-rata sharing of the marginal price level, McAfee reduction.
"""
from __future__ import annotations

from market.te.auction.call_auction import AuctionConfig


def clear_walk(orders: list[tuple[str, bool, int, int, int]], cfg: AuctionConfig = AuctionConfig()):
    """orders: (order_id, is_buy, price_uusd_per_kwh, qty_wh, seq).

    Returns (fills {order_id: Wh}, volume_wh, buyer_price, seller_price, operator_surplus_ntok).
    """
    bids = sorted((o for o in orders if o[1]), key=lambda o: (-o[2], o[4], o[0]))
    asks = sorted((o for o in orders if not o[1]), key=lambda o: (o[2], o[4], o[0]))
    fills = {o[0]: 0 for o in orders}
    i = j = 0
    rem_b = bids[0][3] if bids else 0
    rem_a = asks[0][3] if asks else 0
    volume = 0
    last_i = last_j = -1
    while i < len(bids) and j < len(asks) and bids[i][2] >= asks[j][2]:
        t = min(rem_b, rem_a)
        fills[bids[i][0]] += t
        fills[asks[j][0]] += t
        volume += t
        last_i, last_j = i, j
        rem_b -= t
        rem_a -= t
        if rem_b == 0:
            i += 1
            rem_b = bids[i][3] if i < len(bids) else 0
        if rem_a == 0:
            j += 1
            rem_a = asks[j][3] if j < len(asks) else 0
    if volume == 0:
        return fills, 0, None, None, 0
    b_m, a_m = bids[last_i][2], asks[last_j][2]
    price = a_m + (b_m - a_m) * cfg.k_num // cfg.k_den
    buyer_price = seller_price = price
    if cfg.mechanism == "mcafee":
        nb = _next_index(bids, last_i, cfg.tie_break)
        na = _next_index(asks, last_j, cfg.tie_break)
        p0 = (bids[nb][2] + asks[na][2]) // 2 if nb < len(bids) and na < len(asks) else None
        if p0 is not None and a_m <= p0 <= b_m:
            buyer_price = seller_price = p0
        else:
            keep_b = last_i if cfg.tie_break == "time" else _level_start(bids, last_i)
            keep_a = last_j if cfg.tie_break == "time" else _level_start(asks, last_j)
            bids, asks = bids[:keep_b], asks[:keep_a]
            volume = min(sum(o[3] for o in bids), sum(o[3] for o in asks))
            buyer_price, seller_price = b_m, a_m
            fills = {o[0]: 0 for o in orders}
            if volume == 0:
                return fills, 0, None, None, 0
            _fill_walk(bids, volume, fills)
            _fill_walk(asks, volume, fills)
    if cfg.tie_break == "pro_rata":
        for side in (bids, asks):
            for o in side:
                fills[o[0]] = 0
            _fill_pro_rata(side, volume, fills)
    return fills, volume, buyer_price, seller_price, volume * (buyer_price - seller_price)


def _next_index(side, pos, tie_break):
    pos += 1
    if tie_break == "pro_rata":
        while pos < len(side) and side[pos][2] == side[pos - 1][2]:
            pos += 1
    return pos


def _level_start(side, pos):
    while pos > 0 and side[pos - 1][2] == side[pos][2]:
        pos -= 1
    return pos


def _fill_walk(side, volume, fills):
    for o in side:
        t = min(o[3], volume)
        fills[o[0]] = t
        volume -= t


def _fill_pro_rata(side, volume, fills):
    """Better levels fill fully; the level holding the last Wh shares pro rata (largest remainder, id)."""
    done = 0
    k = 0
    while k < len(side):
        level = [o for o in side[k:] if o[2] == side[k][2]]
        total = sum(o[3] for o in level)
        if done + total <= volume:
            for o in level:
                fills[o[0]] = o[3]
            done += total
            k += len(level)
            continue
        share = volume - done
        parts = [(share * o[3] // total, share * o[3] % total, o[0]) for o in level]
        left = share - sum(p[0] for p in parts)
        bonus = {p[2] for p in sorted(parts, key=lambda p: (-p[1], p[2]))[:left]}
        for base, _, oid in parts:
            fills[oid] = base + (1 if oid in bonus else 0)
        return
