"""Complex blocks (MAR, linked, exclusive, paradoxical acceptance), daily energy limits and bilateral
schedules on the hand-solvable 3-bus case (loads 50 kW at bus 2, 100 kW at bus 3, one hour each)."""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.blocks import block_report, clear_without_paradox
from market.lem.network_data import CriticalSet
from market.lem.pricing import clear_dam
from market.lem.schema import MarketDataError, load_market
from market.lem.settlement import settle

from tests.market.lem.conftest import three_bus


def _market(**kw) -> dict:
    return {"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0]}, **kw}


def _block(id_, loc, price, kw, **more) -> dict:
    return {"id": id_, "location": loc, "price_usd_per_mwh": price, "p_kw": kw, "first_interval": 0,
            "n_intervals": 1, **more}


def _clear(doc, net=None):
    mk, net = load_market(doc), net or three_bus()
    result, report, excluded, rounds = clear_without_paradox(
        mk, lambda fixed: (lambda c: (c, net, c))(clear_dam(mk, net, fixed=fixed)))
    return result, {r.id: r for r in report}, excluded, rounds


# ISO 30 USD/MWh for at most 100 kW, a block of 100 kW at 40 at bus 2, g3 200 kW at 90 at bus 3.
MAR_CASE = dict(iso={"import_price_usd_per_mwh": [30.0], "import_max_kw": 100.0},
                offers=[{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 90.0, "p_kw": 200.0}]}])


def test_minimum_acceptance_ratio_lets_a_block_be_partly_accepted_at_its_price():
    # 150 kW of load, 100 from the ISO; MAR 0.3: the block gives the other 50 kW (ratio 0.5) and is
    # marginal: every price 40 USD/MWh, its surplus 0
    c, rep, excluded, rounds = _clear(_market(**MAR_CASE, blocks=[_block("b", "2.1", 40.0, 100.0, min_acceptance_ratio=0.3)]))
    assert np.allclose(c.schedule_kw["b"], 50.0) and np.allclose(c.prices.dlmp_usd_per_mwh, 40.0, atol=1e-9)
    assert rep["b"].status == "partially_accepted" and abs(rep["b"].ratio - 0.5) < 1e-9 and rounds == 1


def test_a_paradoxically_accepted_block_is_excluded_and_the_market_cleared_again():
    # MAR 0.6: the MIP takes 60 kW of the block + 90 of the ISO (5.1 USD, cheaper than ISO 100 + g3 50 at
    # 7.5 USD); at the pricing run's price 30 (the ISO is marginal) the block loses (30 − 40)·60/1000 =
    # 0.6 USD: paradoxically accepted. Excluded, the market clears with g3 at 90; the block, now rejected,
    # would have earned (90 − 40)·100/1000 = 5 USD at those prices.
    doc = _market(**MAR_CASE, blocks=[_block("b", "2.1", 40.0, 100.0, min_acceptance_ratio=0.6)])
    first = clear_dam(load_market(doc), three_bus())
    first_rep = {r.id: r for r in block_report(load_market(doc), three_bus(), first)}
    assert abs(first.objective_usd - 5.1) < 1e-9 and abs(first_rep["b"].surplus_usd + 0.6) < 1e-9
    c, rep, excluded, rounds = _clear(doc)
    assert excluded == ["b"] and rounds == 2
    assert np.allclose(c.schedule_kw["g3"], 50.0) and np.allclose(c.prices.dlmp_usd_per_mwh, 90.0, atol=1e-9)
    assert abs(c.objective_usd - 7.5) < 1e-9
    assert rep["b"].status == "excluded_paradoxical" and abs(rep["b"].opportunity_cost_usd - 5.0) < 1e-9
    assert "b" not in c.uplift_usd


def test_a_child_is_accepted_only_with_its_parent_and_may_carry_its_loss():
    # ISO 50 unlimited. Parent P 50 kW at 70, child C 50 kW at 20 (both at bus 2). Unlinked: C in, P out.
    # Linked: both in (4.5 USD < 5.0 USD of ISO energy); P loses 1 USD at 50, C earns 1.5: the family
    # surplus +0.5 keeps P (not paradoxical).
    free = _clear(_market(blocks=[_block("P", "2.1", 70.0, 50.0), _block("C", "2.1", 20.0, 50.0)]))[1]
    assert free["C"].status == "accepted" and free["P"].status == "rejected"
    c, rep, excluded, _ = _clear(_market(blocks=[_block("P", "2.1", 70.0, 50.0), _block("C", "2.1", 20.0, 50.0, parent="P")]))
    assert rep["P"].status == rep["C"].status == "accepted" and not excluded
    assert abs(rep["P"].surplus_usd + 1.0) < 1e-9 and abs(rep["C"].surplus_usd - 1.5) < 1e-9
    # C at 40 cannot carry P (5.5 USD > 5.0): both out, C paradoxically rejected: (50 − 40)·50/1000 = 0.5 USD
    _, rep, _, _ = _clear(_market(blocks=[_block("P", "2.1", 70.0, 50.0), _block("C", "2.1", 40.0, 50.0, parent="P")]))
    assert rep["P"].status == "rejected" and rep["C"].status == "paradoxically_rejected"
    assert abs(rep["C"].opportunity_cost_usd - 0.5) < 1e-9


def test_at_most_one_block_of_an_exclusive_group_is_accepted():
    # E1 80 kW at 30 saves 1.6 USD against the ISO at 50, E2 60 kW at 20 saves 1.8: only E2; E1 is
    # paradoxically rejected with (50 − 30)·80/1000 = 1.6 USD of opportunity cost
    blocks = [_block("E1", "2.1", 30.0, 80.0, exclusive_group="g"), _block("E2", "3.1", 20.0, 60.0, exclusive_group="g")]
    c, rep, _, _ = _clear(_market(blocks=blocks))
    assert rep["E2"].status == "accepted" and rep["E1"].status == "paradoxically_rejected"
    assert abs(rep["E1"].opportunity_cost_usd - 1.6) < 1e-9 and np.allclose(c.prices.dlmp_usd_per_mwh, 50.0)
    both = _clear(_market(blocks=[{**b, "exclusive_group": None} for b in blocks]))[1]
    assert both["E1"].status == both["E2"].status == "accepted"


def test_daily_energy_limits_bind_by_hand():
    # ISO 100, 20, 100 USD/MWh. g2 (100 kW at 50) may give at most 120 kWh over the day: 120 kWh in the
    # two dear hours (any split), none in the cheap one. d3 (50 kW at 30) must take at least 60 kWh: 50 in
    # the cheap hour, 10 more in a dear one. Objective by hand: g2 6.0 + ISO (300 − 120)·0.1 + 150·0.02
    # − d3's 1.5 − 10·0.03 + the ISO for d3: 50·0.02 + 10·0.1 = 27.2 USD.
    doc = {"intervals": 3, "iso": {"import_price_usd_per_mwh": [100.0, 20.0, 100.0]},
           "offers": [{"id": "g2", "location": "2.1", "steps": [{"price_usd_per_mwh": 50.0, "p_kw": 100.0}],
                       "daily_energy_max_kwh": 120.0}],
           "bids": [{"id": "d3", "location": "3.1", "steps": [{"price_usd_per_mwh": 30.0, "p_kw": 50.0}],
                     "daily_energy_min_kwh": 60.0}]}
    c = clear_dam(load_market(doc), three_bus(intervals=3, limit23_kw=1e6))
    g, d = c.schedule_kw["g2"], -c.schedule_kw["d3"]
    assert abs(g.sum() - 120.0) < 1e-9 and abs(g[1]) < 1e-9
    assert abs(d.sum() - 60.0) < 1e-9 and abs(d[1] - 50.0) < 1e-9
    assert abs(c.objective_usd - 27.2) < 1e-9
    with pytest.raises(MarketDataError, match=r"bids\[0\].daily_energy_min_kwh"):
        load_market({**doc, "bids": [{**doc["bids"][0], "daily_energy_min_kwh": 151.0}]})


def test_a_bilateral_schedule_pays_the_dlmp_difference_as_a_network_charge():
    # The congested textbook case (line 2–3 at 60 kW: 50 at bus 2, 80 at bus 3) with 10 kW moved from
    # bus 2 to bus 3: g3 makes 10 kW more (50), the ISO 10 less (100), prices unchanged; the schedule pays
    # 10 × (80 − 50)/1000 = 0.3 USD; the DSO still keeps 60 kW × 30 = 1.8 USD.
    doc = _market(offers=[{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 80.0, "p_kw": 200.0}]}],
                  bilaterals=[{"id": "bil", "from_location": "2.1", "to_location": "3.1", "p_kw": [10.0]}])
    mk, net = load_market(doc), three_bus()
    c = clear_dam(mk, net, CriticalSet(lines=["line.23.1"]))
    assert np.allclose(c.schedule_kw["g3"], 50.0) and np.allclose(c.schedule_kw["iso"], 100.0)
    assert np.allclose(c.prices.at("2.1"), 50.0) and np.allclose(c.prices.at("3.1"), 80.0)
    s = settle(mk, net, c)
    assert abs(s.totals_usd["bil"] + 0.3) < 1e-9 and abs(s.congestion_rent_usd[0] - 1.8) < 1e-9
    assert np.all(np.abs(s.balance_gap_usd) < 1e-9)


def test_block_family_errors_name_the_field():
    with pytest.raises(MarketDataError, match=r"blocks\[0\].parent: no block 'x'"):
        load_market(_market(blocks=[_block("a", "2.1", 1.0, 1.0, parent="x")]))
    with pytest.raises(MarketDataError, match="loops"):
        load_market(_market(blocks=[_block("a", "2.1", 1.0, 1.0, parent="b"), _block("b", "2.1", 1.0, 1.0, parent="a")]))
