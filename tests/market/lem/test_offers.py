"""The offer generator: valid against the schema, deterministic per seed, scaled to the feeder."""
from __future__ import annotations

import json

import pytest

from market.lem.offers import counts, generate_offers, load_points, write_offers
from market.lem.profiles import SeriesError, iso_price, load_shape, read_series
from market.lem.schema import load_market

from tests.market.lem.conftest import IEEE13


@pytest.fixture(scope="module")
def feeder():
    from market.network import load_dss

    return load_dss(IEEE13)[0]


def test_valid_deterministic_and_seed_dependent(feeder, tmp_path):
    a, b, c = generate_offers(feeder, 7), generate_offers(feeder, 7), generate_offers(feeder, 8)
    load_market(a)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) != json.dumps(c, sort_keys=True)
    p1, p2 = write_offers(a, tmp_path / "a.json"), write_offers(b, tmp_path / "b.json")
    assert p1.read_bytes() == p2.read_bytes()
    assert load_market(p1).intervals == 24


def test_mixed_and_scaled_to_the_feeder_load(feeder):
    doc = generate_offers(feeder, 1)
    n = counts(doc)
    assert all(n[k] >= 1 for k in ("offers", "bids", "blocks", "storage", "units"))
    total = sum(kw for _, kw in load_points(feeder))  # 3466 kW on IEEE 13
    pv = [o for o in doc["offers"] if o["id"].startswith("pv")]
    pv_kw = sum(o["steps"][0]["p_kw"] for o in pv)
    assert 0.15 * total < pv_kw < 0.5 * total
    assert all(max(o["p_max_kw"]) <= o["steps"][0]["p_kw"] and o["p_max_kw"][2] == 0.0 for o in pv)  # dark at 02 h
    dg = sum(u["p_max_kw"] for u in doc["units"])
    assert 0.1 * total < dg < 0.35 * total
    locations = {loc for loc, _ in load_points(feeder)}
    for family in ("offers", "bids", "blocks", "storage", "units"):
        assert {r["location"] for r in doc[family]} <= locations
    assert "652.1" in locations and "671" in locations  # one-phase node, three-phase bus
    dense = counts(generate_offers(feeder, 1, density=3.0))
    assert dense["offers_and_bids"] > 2.5 * n["offers_and_bids"]


def test_complex_blocks_bilateral_and_energy_limits_are_generated(feeder):
    doc = generate_offers(feeder, 1, density=2.0)
    blocks = doc["blocks"]
    assert any(b.get("min_acceptance_ratio", 1.0) < 1.0 for b in blocks)
    assert any(b.get("parent") for b in blocks) and any(b.get("exclusive_group") for b in blocks)
    groups = [b["exclusive_group"] for b in blocks if b.get("exclusive_group")]
    assert all(groups.count(g) == 2 for g in groups)
    bil = doc["bilaterals"]
    assert len(bil) == 1 and bil[0]["from_location"] != bil[0]["to_location"] and len(bil[0]["p_kw"]) == 24
    assert any("daily_energy_max_kwh" in u for u in doc["units"])
    assert any("daily_energy_min_kwh" in b for b in doc["bids"])
    assert counts(doc)["complex_blocks"] >= 3 and counts(doc)["bilaterals"] == 1


def test_series_defaults_and_errors(tmp_path):
    assert len(load_shape(24)) == 24 and max(load_shape(24)) == 1.0
    assert len(iso_price(48)) == 48 and iso_price(48)[24] == iso_price(24)[0]
    bad = tmp_path / "s.csv"
    bad.write_text("interval,load_factor\n0,1.0\n1,x\n")
    with pytest.raises(SeriesError, match=r"s.csv:3"):
        read_series(bad, "load_factor", 2)
    bad.write_text("interval,load_factor\n0,1.0\n1,0.5\n")
    with pytest.raises(SeriesError, match="2 rows for 4 intervals"):
        read_series(bad, "load_factor", 4)
    with pytest.raises(SeriesError, match="needs columns"):
        read_series(bad, "price_usd_per_mwh", 2)
