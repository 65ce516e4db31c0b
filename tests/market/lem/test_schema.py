"""Market data: validation errors name the field path; the shipped JSON schema is current."""
from __future__ import annotations

import json

import pytest

from market.lem.schema import SCHEMA_PATH, MarketDataError, field_path, json_schema, load_market

BASE = {"intervals": 2, "iso": {"import_price_usd_per_mwh": [40.0, 60.0]}}


def market(**extra):
    return {**BASE, **extra}


def errors_of(data) -> list[str]:
    with pytest.raises(MarketDataError) as info:
        load_market(data)
    return info.value.errors


def test_field_path_notation():
    assert field_path(("offers", 12, "steps", 1, "price_usd_per_mwh")) == "offers[12].steps[1].price_usd_per_mwh"


def test_valid_market_normalizes_locations():
    m = load_market(market(offers=[{"id": "pv", "location": "675.1", "steps": [{"price_usd_per_mwh": 0, "p_kw": 5}]}],
                           units=[{"id": "dg", "location": "671", "p_min_kw": 10, "p_max_kw": 50,
                                   "price_usd_per_mwh": 70}]))
    assert m.offers[0].location == "675.1" and m.units[0].location == "671"


def test_type_and_range_errors_name_the_path():
    steps = [{"price_usd_per_mwh": 10, "p_kw": 1}] * 12 + [{"price_usd_per_mwh": 10, "p_kw": 1},
                                                             {"price_usd_per_mwh": "cheap", "p_kw": 1}]
    offers = [{"id": f"o{i}", "location": "675.1", "steps": [{"price_usd_per_mwh": 1, "p_kw": 1}]} for i in range(12)]
    offers.append({"id": "o12", "location": "675.1", "steps": steps[-2:]})
    errs = errors_of(market(offers=offers, storage=[{"id": "b", "location": "bad bus", "p_charge_max_kw": 1,
                                                     "p_discharge_max_kw": 1, "e_max_kwh": 2, "soc_initial_kwh": 1}]))
    assert any(e.startswith("offers[12].steps[1].price_usd_per_mwh: ") for e in errs), errs
    assert any(e.startswith("storage[0].location: ") for e in errs), errs


def test_consistency_errors_name_the_path():
    errs = errors_of(market(
        offers=[{"id": "a", "location": "675.1", "steps": [{"price_usd_per_mwh": 1e6, "p_kw": 1}], "p_max_kw": [1]}],
        blocks=[{"id": "a", "location": "671", "price_usd_per_mwh": 30, "p_kw": 5, "first_interval": 1,
                 "n_intervals": 2}]))
    assert "offers[0].steps[0].price_usd_per_mwh: 1000000.0 outside [price_floor, price_cap] = [-500.0, 5000.0]" in errs
    assert any(e.startswith("offers[0].p_max_kw: 1 values for 2 intervals") for e in errs)
    assert any(e.startswith("blocks[0].n_intervals: ") for e in errs)
    assert any(e.startswith("blocks[0].id: 'a' already used by offers[0].id") for e in errs)


def test_storage_soc_out_of_range_is_reported_at_the_storage():
    errs = errors_of(market(storage=[{"id": "b", "location": "675.1", "p_charge_max_kw": 1, "p_discharge_max_kw": 1,
                                      "e_max_kwh": 2, "soc_initial_kwh": 3}]))
    assert len(errs) == 1 and errs[0].startswith("storage[0]: ") and "soc_initial_kwh=3.0" in errs[0]


def test_shipped_json_schema_is_current():
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema(), \
        "regenerate with python -c 'from market.lem.schema import write_json_schema; write_json_schema()'"
