"""Settlement against signed meter readings: a hand-computed interval."""
from __future__ import annotations

from market.settlement.verify import verify_ledger
from market.te.auction.charges import DlmpDifferenceCharge
from market.te.auction.interval import GRID, Trade
from market.te.auction.prices import TablePriceLookup
from market.te.auction.settle import Reading, SettlementPolicy, settle_interval

from .conftest import add_meter


def test_hand_computed_interval(ledger_and_validators):
    ledger, _ = ledger_and_validators
    readings = {"S": Reading(add_meter(ledger, "S", export_wh=800), 800, 0),
                "B": Reading(add_meter(ledger, "B", import_wh=1000), 0, 1000),
                "C": Reading(add_meter(ledger, "C", export_wh=300), 300, 0),
                "D": Reading(add_meter(ledger, "D", import_wh=50), 0, 50)}
    prices = TablePriceLookup({("b01", 0): 40.0, ("b02", 0): 45.0, ("pcc", 0): 40.0})
    locs = {"S": "b01", "B": "b02", "C": "b01", "D": "b01", GRID: "pcc"}
    trades = [Trade(0, "B", "S", "ob", "os", 1000, 100_000, 100_000),     # S sold 1000, delivers only 800
              Trade(0, "D", GRID, "od", "g", 50, 120_000, 120_000)]      # D bought from the grid in the auction
    st = settle_interval(ledger, trades, readings, locs, DlmpDifferenceCharge(prices), 250_000, 40_000, 0,
                         SettlementPolicy(penalty_uusd_per_kwh=10_000))
    # S: paid 800 Wh x 100000 = 80e6, fined 200 Wh x 10000 = 2e6.  B: pays 80e6, network charge
    # 800 Wh x (45-40) USD/MWh = 800 x 5000 = 4e6 to the DSO, and the 200 Wh it imported beyond its
    # delivered purchase at the grid's 250000 = 50e6.  C: unsold export 300 Wh at 40000 = 12e6 minted.
    # D: 50 Wh x 120000 = 6e6 burned, nothing more (its import is covered by the grid trade).
    assert st.delivered_wh == [800, 50] and st.undelivered_wh == 200
    assert st.network_charge_ntok == [4_000_000, 0]
    assert ledger.state.balances == {"S": 78_000_000, "B": -134_000_000, "dso": 4_000_000, "C": 12_000_000,
                                     "D": -6_000_000}
    assert (st.minted_ntok, st.burned_ntok) == (12_000_000, 2_000_000 + 50_000_000 + 6_000_000)
    assert (st.imbalance_import_wh, st.imbalance_export_wh) == (200, 300)
    rep = verify_ledger(ledger.store)
    assert rep.ok and sum(rep.balances_ntok.values()) == rep.minted_ntok - rep.burned_ntok
