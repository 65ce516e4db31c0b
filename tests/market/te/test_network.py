"""Grid of last resort, network charges (DLMP difference, zone tariff) and LEM-to-LEM exchange."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from market.te.auction.call_auction import AuctionConfig
from market.te.auction.charges import DlmpDifferenceCharge, ZoneTariffCharge, trade_charges_ntok
from market.te.auction.errors import AuctionError, PriceLookupError
from market.te.auction.exchange import Interface, clear_exchange
from market.te.auction.interval import GRID, GridOfLastResort, Trade, clear_interval
from market.te.auction.model import Order
from market.te.auction.prices import FlatTariff, TablePriceLookup, price_uusd_per_kwh


def test_grid_is_buyer_and_seller_of_last_resort_hand_computed():
    # peers: bid 200 Wh @ 300000, ask 100 Wh @ 100000; grid sells @ 250 USD/MWh = 250000 uUSD/kWh,
    # buys @ 50000.  Asks: peer 100k x100, grid 250k; bids: peer 300k x200, grid 50k.
    # 0-100 Wh: 300k >= 100k; 100-200: 300k >= 250k; beyond: grid bid 50k < 250k -> Q = 200,
    # marginal bid 300k, ask 250k, midpoint 275000.
    orders = [Order("b", "p1", "buy", 4, 200, 300_000), Order("s", "p2", "sell", 4, 100, 100_000, 1)]
    grid = GridOfLastResort(FlatTariff(250.0), FlatTariff(50.0))
    res = clear_interval(4, orders, AuctionConfig(), grid)
    assert res.result.price_uusd_per_kwh == 275_000
    assert [(t.buyer_id, t.seller_id, t.qty_wh) for t in res.trades] == [("p1", "p2", 100), ("p1", GRID, 100)]
    assert (res.grid_sold_wh, res.grid_bought_wh) == (100, 0)
    # a seller above the grid's buy price with no buyers sells nothing; below it, sells to the grid
    res = clear_interval(4, [Order("s", "p2", "sell", 4, 80, 40_000)], AuctionConfig(), grid)
    assert res.grid_bought_wh == 80 and res.result.seller_price_uusd_per_kwh >= 40_000
    with pytest.raises(AuctionError, match="arbitrage"):
        clear_interval(4, orders, AuctionConfig(), GridOfLastResort(FlatTariff(10.0), FlatTariff(50.0)))
    with pytest.raises(AuctionError, match="interval 3 != 4"):
        clear_interval(4, [Order("x", "p", "buy", 3, 1, 1)])


def test_dlmp_difference_and_zone_tariff_charges(tmp_path):
    csv = tmp_path / "dlmp.csv"
    csv.write_text("bus,phase,interval,dlmp_usd_per_mwh,energy,loss,congestion,voltage\n"
                   "671,1,0,40.0,40,0,0,0\n671,2,0,42.0,40,2,0,0\n675,1,0,45.5,40,1.5,4,0\n")
    prices = TablePriceLookup.from_dlmp_csv(csv)
    assert prices.price_usd_per_mwh("671", 0) == 41.0  # mean over phases
    assert price_uusd_per_kwh(prices, "671.2", 0) == 42_000
    with pytest.raises(PriceLookupError, match="no price"):
        prices.price_usd_per_mwh("671", 1)
    trade = Trade(0, "buyer", "seller", "b", "s", 1000, 0, 0)
    # 1 kWh moved from 671.1 (40 USD/MWh) to 675 (45.5): 5.5 USD/MWh = 5500 uUSD/kWh -> 5.5e6 ntok
    locs = {"seller": "671.1", "buyer": "675"}
    assert trade_charges_ntok([trade], locs, DlmpDifferenceCharge(prices)) == [5_500_000]
    back = Trade(0, "seller", "buyer", "b", "s", 1000, 0, 0)  # the reverse direction earns a credit
    assert trade_charges_ntok([back], locs, DlmpDifferenceCharge(prices)) == [-5_500_000]
    zones = ZoneTariffCharge({"671.1": "north", "675": "south"}, {("north", "south"): 12_000})
    assert trade_charges_ntok([trade], locs, zones) == [12_000_000]
    with pytest.raises(PriceLookupError, match="no tariff from zone 'south'"):
        trade_charges_ntok([back], locs, zones)
    assert zones.charge_uusd_per_kwh("675", "675", 0) == 0


def test_lem_to_lem_exchange_respects_capacity_hand_computed():
    # A: seller 500 Wh @ 50000, local buyer 100 Wh @ 60000.  B: buyer 400 Wh @ 200000 only.
    # Local A: 100 Wh trade.  Residual: A ask 400 Wh @ 50000 vs B bid 400 @ 200000, capped 250.
    a = [Order("a-s", "pa1", "sell", 0, 500, 50_000), Order("a-b", "pa2", "buy", 0, 100, 60_000, 1)]
    b = [Order("b-b", "pb1", "buy", 0, 400, 200_000)]
    res = clear_exchange(0, a, b, Interface("A", "B", 250))
    assert res.local_a.result.volume_wh == 100 and res.local_b.result.volume_wh == 0
    assert (res.flow_a_to_b_wh, res.flow_b_to_a_wh) == (250, 0)
    assert [(t.buyer_id, t.seller_id, t.qty_wh, t.buyer_price_uusd_per_kwh) for t in res.exchange_trades] == \
        [("pb1", "pa1", 250, 125_000)]
    grid = GridOfLastResort(FlatTariff(150.0), FlatTariff(20.0))  # sells @ 150000, buys @ 20000
    res = clear_exchange(0, a, b, Interface("A", "B", 250), grid_a=grid, grid_b=grid)
    assert res.grid_b.grid_sold_wh == 150  # B's unserved 150 Wh from its grid at <= 200000
    assert res.grid_a.grid_bought_wh == 0  # A's residual ask @ 50000 is above the grid's 20000


market_orders = st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(1, 50)), max_size=15)


@settings(max_examples=80, deadline=None)
@given(market_orders, market_orders, st.integers(0, 120))
def test_exchange_properties(rows_a, rows_b, cap):
    a = [Order(f"a{i}", f"pa{i}", "buy" if s else "sell", 0, q, p, i) for i, (s, p, q) in enumerate(rows_a)]
    b = [Order(f"b{i}", f"pb{i}", "buy" if s else "sell", 0, q, p, i) for i, (s, p, q) in enumerate(rows_b)]
    res = clear_exchange(0, a, b, Interface("A", "B", cap))
    assert abs(res.net_flow_a_to_b_wh) <= cap
    limit = {o.order_id: o for o in a + b}
    filled = {}
    for r in (res.local_a, res.local_b):
        for o_id, f in r.fill_of().items():
            filled[o_id] = filled.get(o_id, 0) + f
    for t in res.exchange_trades:
        assert t.buyer_price_uusd_per_kwh <= limit[t.buy_order_id].price_uusd_per_kwh
        assert t.seller_price_uusd_per_kwh >= limit[t.sell_order_id].price_uusd_per_kwh
        assert t.buy_order_id[0] != t.sell_order_id[0]  # crosses the interface
        for oid in (t.buy_order_id, t.sell_order_id):
            filled[oid] = filled.get(oid, 0) + t.qty_wh
    for oid, f in filled.items():
        assert f <= limit[oid].qty_wh
    ab = sum(t.qty_wh for t in res.exchange_trades if t.seller_id.startswith("pa"))
    assert ab == res.flow_a_to_b_wh
