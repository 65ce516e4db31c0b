"""Settlement at the DLMPs: the 3-bus congested case by hand (congestion rent = flow × price spread)."""
from __future__ import annotations

import numpy as np

from market.lem.network_data import CriticalSet
from market.lem.pricing import clear_dam
from market.lem.schema import load_market
from market.lem.settlement import settle

from tests.market.lem.conftest import three_bus


def test_three_bus_settlement_by_hand():
    # loads 50 kW at bus 2 (price 50) and 100 kW at bus 3 (price 80), one hour: they pay 2.5 + 8.0 USD;
    # the generator at 3 gets 40 kW × 80 = 3.2, the ISO 110 kW × 50 = 5.5; the DSO keeps the rest,
    # 1.8 USD = the congested line's 60 kW × (80 − 50) USD/MWh; lossless: no loss surplus.
    mk = load_market({"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0]},
                      "offers": [{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 80.0, "p_kw": 200.0}]}]})
    net = three_bus()
    s = settle(mk, net, clear_dam(mk, net, CriticalSet(lines=["line.23.1"])))
    assert abs(s.totals_usd["g3"] - 3.2) < 1e-9 and abs(s.totals_usd["iso"] - 5.5) < 1e-9
    assert abs(s.totals_usd["fixed_load@2.1"] + 2.5) < 1e-9 and abs(s.totals_usd["fixed_load@3.1"] + 8.0) < 1e-9
    assert abs(s.congestion_rent_usd[0] - 1.8) < 1e-9 and abs(s.loss_surplus_usd[0]) < 1e-9
    assert abs(s.dso_surplus_usd - 1.8) < 1e-9 and np.all(np.abs(s.balance_gap_usd) < 1e-9)
