"""Hand-solvable clearings: a congested 3-bus radial line, too little supply, storage modes, min up time."""
from __future__ import annotations

import numpy as np
import pyomo.environ as pe

from market.lem.network_data import CriticalSet
from market.lem.pricing import clear_dam
from market.lem.problem import build_dam, solve_model
from market.lem.schema import load_market

from tests.market.lem.conftest import three_bus


def test_three_bus_congested_line_gives_textbook_prices():
    # ISO at 50 USD/MWh unlimited; a generator at bus 3 offers 200 kW at 80. Loads 50 kW (bus 2),
    # 100 kW (bus 3); line 2–3 carries at most 60 kW. By hand: the ISO serves bus 2 and 60 kW of bus 3,
    # the generator the other 40 kW; price 50 at bus 2 (marginal: the ISO), 80 at bus 3 (marginal:
    # the generator), congestion 30 at bus 3; objective (110·50 + 40·80)/1000 = 8.7 USD.
    mk = load_market({"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0]},
                      "offers": [{"id": "g3", "location": "3.1", "steps": [{"price_usd_per_mwh": 80.0, "p_kw": 200.0}]}]})
    c = clear_dam(mk, three_bus(), CriticalSet(lines=["line.23.1"]))
    assert abs(c.objective_usd - 8.7) < 1e-9 and abs(c.pricing_objective_usd - 8.7) < 1e-9
    assert np.allclose(c.schedule_kw["g3"], [40.0]) and np.allclose(c.schedule_kw["iso"], [110.0])
    assert np.allclose(c.prices.at("2.1"), [50.0], atol=1e-9) and np.allclose(c.prices.at("3.1"), [80.0], atol=1e-9)
    assert np.allclose(c.prices.energy, 50.0) and np.allclose(c.prices.congestion[:, 0], [0.0, 30.0])
    assert not c.slacks and not c.uplift_usd
    # the same line not in the critical set: the generator is not needed and both prices are 50
    free = clear_dam(mk, three_bus())
    assert np.allclose(free.prices.dlmp_usd_per_mwh, 50.0) and np.allclose(free.schedule_kw["g3"], 0.0)


def test_too_little_supply_is_reported_as_slack_never_an_exception():
    # 150 kW of load, ISO import capped at 100 kW, a 30 kW generator: 20 kW unserved in each interval.
    mk = load_market({"intervals": 2, "iso": {"import_price_usd_per_mwh": [50.0, 50.0], "import_max_kw": 100.0},
                      "offers": [{"id": "g2", "location": "2.1", "steps": [{"price_usd_per_mwh": 90.0, "p_kw": 30.0}]}]})
    c = clear_dam(mk, three_bus(intervals=2))
    short = [s for s in c.slacks if s.family == "energy_shortfall"]
    assert [(s.where, s.interval) for s in short] == [("1", 0), ("1", 1)]
    assert np.allclose([s.amount for s in short], 20.0) and all(s.unit == "kW" for s in short)
    # unserved energy is priced at the cap
    assert np.allclose(c.prices.dlmp_usd_per_mwh, mk.price_cap_usd_per_mwh)
    assert np.all(np.isfinite(c.prices.dlmp_usd_per_mwh))


def test_overloaded_line_slack_is_named_by_branch_and_interval():
    mk = load_market({"intervals": 1, "iso": {"import_price_usd_per_mwh": [50.0]}})
    c = clear_dam(mk, three_bus(), CriticalSet(lines=["line.23.1"]))  # F23 = 100 kW, no local supply: 40 kW over
    assert [(s.family, s.where, s.interval) for s in c.slacks] == [("line_over", "line.23.1", 0)]
    assert abs(c.slacks[0].amount - 40.0) < 1e-9


STORAGE_DAY = {"intervals": 3, "price_floor_usd_per_mwh": -500.0,
               "iso": {"import_price_usd_per_mwh": [-100.0, -100.0, -100.0]},
               "storage": [{"id": "bat", "location": "2.1", "p_charge_max_kw": 50.0, "p_discharge_max_kw": 50.0,
                            "e_max_kwh": 200.0, "soc_initial_kwh": 100.0, "eta_charge": 0.9, "eta_discharge": 0.9}]}


def test_storage_never_charges_and_discharges_at_once():
    # At a negative price, charging and discharging at once burns energy (η < 1) and is paid for it:
    # the LP relaxation does exactly that, the clearing must not.
    mk = load_market(STORAGE_DAY)
    relaxed = build_dam(mk, three_bus(intervals=3))
    pe.TransformationFactory("core.relax_integer_vars").apply_to(relaxed)
    solve_model(relaxed)
    both = [min(pe.value(relaxed.storage_charge[0, t]), pe.value(relaxed.storage_discharge[0, t])) for t in range(3)]
    assert max(both) > 1.0, "the case does not tempt simultaneous charge/discharge"
    mip = build_dam(mk, three_bus(intervals=3))
    solve_model(mip)
    for t in range(3):
        assert min(pe.value(mip.storage_charge[0, t]), pe.value(mip.storage_discharge[0, t])) <= 1e-9


def test_commitment_unit_honours_min_up_time():
    # The unit (p_min 20, p_max 100 kW at 60 USD/MWh) beats the ISO only in interval 1 (ISO 200 there,
    # 10 after, 5 before). With a minimum up time of 3 intervals it must stay on in 2 and 3 at p_min, then
    # stop (on in 0–2 instead would displace ISO energy at 5, not 10: dearer by 20·5/1000 USD; with
    # 10 in interval 0 both are optimal and the solver may return either).
    iso = [5.0, 200.0, 10.0, 10.0, 10.0, 10.0]
    mk = load_market({"intervals": 6, "iso": {"import_price_usd_per_mwh": iso},
                      "units": [{"id": "dg", "location": "3.1", "p_min_kw": 20.0, "p_max_kw": 100.0,
                                 "price_usd_per_mwh": 60.0, "min_up_intervals": 3}]})
    c = clear_dam(mk, three_bus(intervals=6, limit23_kw=1e6))
    on = [c.integers[f"unit_on[0,{t}]"] for t in range(6)]
    assert on == [0, 1, 1, 1, 0, 0]
    assert np.allclose(c.schedule_kw["dg"], [0, 100, 20, 20, 0, 0])
    # by hand: revenue 100·200/1000 + 2·20·10/1000 = 20.4 USD ≥ cost 60·140/1000 = 8.4 USD: no uplift
    assert "dg" not in c.uplift_usd
    strict = load_market({**mk.model_dump(), "iso": {"import_price_usd_per_mwh": [10.0, 70.0, 10, 10, 10, 10]}})
    c2 = clear_dam(strict, three_bus(intervals=6, limit23_kw=1e6))
    # at 70 in interval 1 the margin (70 − 60)·100/1000 = 1 USD is less than the 2·20·(60 − 10)/1000 = 2 USD
    # lost at p_min in intervals 2 and 3: the unit stays off
    assert [c2.integers[f"unit_on[0,{t}]"] for t in range(6)] == [0] * 6
