"""The real-time market: 5-min clearing against the DA schedule, DA commitments held, two-settlement."""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.pricing import clear_dam
from market.lem.rtm import DamReference, RtmDataError, clear_rtm, rt_market
from market.lem.rtm_settlement import settle_rtm
from market.lem.schema import load_market

from tests.market.lem.conftest import three_bus

# DA: loads 50 kW (bus 2) + 90 kW (bus 3), the ISO (50 USD/MWh, at most 150 kW) serves them all;
# dg (60 USD/MWh, start-up 100 USD) stays off, g3 (80 USD/MWh) is not needed: every DA price is 50.
DAY = {"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0], "import_max_kw": 150.0},
       "offers": [{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 80.0, "p_kw": 200.0}]}],
       "units": [{"id": "dg", "location": "2.1", "p_min_kw": 10.0, "p_max_kw": 100.0, "price_usd_per_mwh": 60.0,
                  "startup_usd": 100.0}]}


@pytest.fixture(scope="module")
def dam():
    mk = load_market(DAY)
    net = three_bus(load3_kw=90.0)
    c = clear_dam(mk, net)
    assert np.allclose(c.prices.dlmp_usd_per_mwh, 50.0) and np.allclose(c.schedule_kw["iso"], [140.0])
    assert c.integers["unit_on[0,0]"] == 0.0
    return mk, DamReference.from_clearing(mk, net, c)


def test_rt_load_rise_is_priced_by_the_marginal_rt_unit_with_da_commitments_held(dam):
    mk, ref = dam
    # RT: bus 3 rises to 120 kW in both 5-min intervals: 170 kW, the ISO gives its 150, the other 20 kW
    # come from g3 at 80 USD/MWh (dg is off in the DA and stays off): every RT price is 80.
    rt = clear_rtm(mk, ref, three_bus(intervals=2, load3_kw=120.0), hour=0)
    assert rt.market.intervals == 2 and abs(rt.market.interval_h - 5 / 60) < 1e-12
    assert np.allclose(rt.clearing.schedule_kw["g3"], 20.0) and np.allclose(rt.clearing.schedule_kw["dg"], 0.0)
    assert np.allclose(rt.clearing.prices.dlmp_usd_per_mwh, 80.0, atol=1e-9)
    # the counterfactual: with its commitment free (start-up sunk in the RT), dg would run and set 60
    free_mk, _ = rt_market(mk, ref, 0, 2)
    free = clear_dam(free_mk, three_bus(intervals=2, load3_kw=120.0))
    assert np.allclose(free.schedule_kw["dg"], 20.0) and np.allclose(free.prices.dlmp_usd_per_mwh, 60.0, atol=1e-9)


def test_two_settlement_by_hand_and_its_identity(dam):
    mk, ref = dam
    rt = clear_rtm(mk, ref, three_bus(intervals=2, load3_kw=120.0), hour=0)
    s = settle_rtm(mk, ref, rt)
    k = (5 / 60) / 1000.0
    by = {(r.party, r.interval): r for r in s.rows}
    # g3: DA 0 kW at 50, deviation +20 kW at 80
    assert abs(by["g3", 0].amount_usd - k * 20 * 80) < 1e-12 and by["g3", 0].da_amount_usd == 0.0
    # bus 3's load: DA 90 kW at 50, deviation 30 kW more at 80 (it pays)
    assert abs(by["fixed_load@3.1", 1].amount_usd + k * (90 * 50 + 30 * 80)) < 1e-12
    assert abs(by["fixed_load@2.1", 1].amount_usd + k * 50 * 50) < 1e-12
    # the ISO: DA 140 kW at 50, deviation +10 kW at the RT energy price 80
    assert abs(by["iso", 0].amount_usd - k * (140 * 50 + 10 * 80)) < 1e-12
    assert np.all(np.abs(s.balance_gap_usd) < 1e-12)
    assert abs(sum(s.totals_usd.values())) < 1e-12


def test_a_window_outside_the_da_horizon_is_refused_by_name(dam):
    mk, ref = dam
    with pytest.raises(RtmDataError, match="hour"):
        rt_market(mk, ref, 0, 13)   # 13 × 5 min leave the one DA hour
