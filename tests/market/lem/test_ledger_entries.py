"""The LEM settlement on the signed ledger: readings signed by the parties' meters, sellers minted against
them, buyers paying the pool, the DSO's rent, the pool closed; verified by the ledger's own verifier."""
from __future__ import annotations

import pytest

from market.lem.ledger_entries import DSO, POOL, append_settlement
from market.lem.network_data import CriticalSet
from market.lem.pricing import clear_dam
from market.lem.schema import load_market
from market.lem.settlement import settle
from market.settlement.errors import SettlementError as LedgerRuleError
from market.settlement.ledger import Ledger
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.verify import verify_ledger

from tests.market.lem.conftest import three_bus


@pytest.fixture()
def books():
    mk = load_market({"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0]},
                      "offers": [{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 80.0, "p_kw": 200.0}]}]})
    net = three_bus()
    return settle(mk, net, clear_dam(mk, net, CriticalSet(lines=["line.23.1"])))


def test_the_three_bus_settlement_on_the_ledger_by_hand(books, tmp_path):
    path = tmp_path / "lem.sqlite"
    rep = append_settlement(path, books, 1.0, seed=7)
    assert rep.created and rep.checkpoint_period == 1
    ledger = Ledger(SQLiteStore(str(path)))
    bal = ledger.state.balances
    # g3: 40 kWh at 80 USD/MWh = 3.2 USD minted; the ISO 110 kWh at 50 = 5.5 USD; the loads owe 2.5 and
    # 8.0 USD; the DSO's congestion rent 1.8 USD; the pool ends at 0 (the identity, exactly here)
    assert bal["g3"] == 3_200_000_000 and bal["iso"] == 5_500_000_000
    assert bal["fixed_load@2.1"] == -2_500_000_000 and bal["fixed_load@3.1"] == -8_000_000_000
    assert bal[DSO] == 1_800_000_000 and bal.get(POOL, 0) == 0 and rep.pool_residual_ntok == 0
    assert ledger.state.minted_ntok == 8_700_000_000 == ledger.state.burned_ntok
    assert rep.rounding_bound_ntok == 1   # exact amounts here: nothing to round
    report = verify_ledger(ledger.store, rep.operator_public_hex)
    assert report.ok, report


def test_a_second_day_appends_and_the_same_day_twice_is_refused(books, tmp_path):
    path = tmp_path / "lem.sqlite"
    append_settlement(path, books, 1.0, seed=7)
    rep = append_settlement(path, books, 1.0, seed=7, start_ts_ms=86_400_000)
    assert not rep.created and rep.checkpoint_period == 2
    assert verify_ledger(Ledger(SQLiteStore(str(path))).store, rep.operator_public_hex).ok
    with pytest.raises(LedgerRuleError, match="duplicate reading"):
        append_settlement(path, books, 1.0, seed=7, start_ts_ms=86_400_000)
    with pytest.raises(LedgerRuleError, match="operator"):
        append_settlement(path, books, 1.0, seed=8, start_ts_ms=2 * 86_400_000)
