"""Orders, participants, prices: validation errors name the field; identities are bound to keys."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from market.settlement.errors import KeyError_, SignatureError
from market.settlement.keys import KeyPair, KeyRegistry
from market.te.auction.errors import OrderError, ParticipantError, PriceLookupError
from market.te.auction.interval import GridOfLastResort
from market.te.auction.model import Order, Participant, order_from_mapping, sign_order, validate_order, verify_order
from market.te.auction.prices import FlatTariff, TablePriceLookup, price_uusd_per_kwh


@pytest.mark.parametrize("field, value, message", [
    ("side", "hold", "side must be one of"),
    ("qty_wh", 0, r"qty_wh=0 outside"),
    ("qty_wh", 1.5, "qty_wh must be an integer"),
    ("price_uusd_per_kwh", -1, "price_uusd_per_kwh=-1 outside"),
    ("interval", True, "interval must be an integer"),
    ("order_id", "", "order_id must be a non-empty str"),
])
def test_validate_order_names_the_field(field, value, message):
    good = dict(order_id="o1", participant_id="p1", side="buy", interval=3, qty_wh=10, price_uusd_per_kwh=5)
    with pytest.raises(OrderError, match=message):
        validate_order(Order(**{**good, field: value}))
    assert validate_order(Order(**{**good, "qty_wh": np.int64(7)})).qty_wh == 7  # numpy ints accepted


def test_order_from_mapping_and_registered_participants():
    with pytest.raises(OrderError, match="missing field\\(s\\) qty_wh, price_uusd_per_kwh"):
        order_from_mapping({"order_id": "o", "participant_id": "p", "side": "buy", "interval": 0})
    order = order_from_mapping({"order_id": "o", "participant_id": "p", "side": "sell", "interval": 0,
                                "qty_wh": 3, "price_uusd_per_kwh": 4})
    with pytest.raises(OrderError, match="not registered"):
        validate_order(order, participants={})
    with pytest.raises(OrderError, match="interval=5 outside"):
        validate_order(Order("o", "p", "buy", 5, 1, 1), n_intervals=5)
    with pytest.raises(ParticipantError, match="location"):
        Participant("p1", "", "k1")


def test_orders_are_bound_to_the_participants_key():
    alice, mallory = KeyPair.derive(1, "alice"), KeyPair.derive(1, "mallory")
    registry = KeyRegistry()
    registry.register("alice", "participant", alice.public_hex, "alice")
    registry.register("meter:alice", "meter", KeyPair.derive(1, "meter:alice").public_hex, "alice")
    participant = Participant("alice", "b01", "alice")
    order = Order("o1", "alice", "sell", 0, 100, 50_000)
    verify_order(order, sign_order(order, alice), participant, registry)
    with pytest.raises(SignatureError):
        verify_order(order, sign_order(order, mallory), participant, registry)
    tampered = Order("o1", "alice", "sell", 0, 100_000, 50_000)
    with pytest.raises(SignatureError):
        verify_order(tampered, sign_order(order, alice), participant, registry)
    with pytest.raises(KeyError_, match="has role 'meter'"):
        verify_order(order, sign_order(order, alice), Participant("alice", "b01", "meter:alice"), registry)


class _NaNLookup:
    def price_usd_per_mwh(self, location: str, interval: int) -> float:
        return float("nan")


def test_prices_convert_once_and_refuse_nan_naming_the_location():
    assert price_uusd_per_kwh(FlatTariff(250.0), "anywhere", 7) == 250_000
    assert price_uusd_per_kwh(FlatTariff(45.5), "671.1", 0) == 45_500
    with pytest.raises(PriceLookupError, match="price at '671.1' interval 3: non-finite"):
        price_uusd_per_kwh(_NaNLookup(), "671.1", 3)


def test_participant_locations_are_location_ids():
    assert Participant("p1", " B01 ", "k1").location == "b01"  # stored normalized
    assert Participant("p1", "671.2", "k1").location == "671.2"
    for bad, why in (("671.x", "not an integer"), ("6 71", "characters"), ("671.0", "node")):
        with pytest.raises(ParticipantError, match=rf"participant 'p1': location '{bad}' is not a location id.*{why}"):
            Participant("p1", bad, "k1")
    with pytest.raises(PriceLookupError, match="grid of last resort: location 'p.c.c'"):
        GridOfLastResort(FlatTariff(250.0), FlatTariff(40.0), "p.c.c")


@pytest.mark.parametrize("location, expected", [("671.1", 40.0), ("671", 41.0), (" 671.2 ", 42.0), ("PCC", 30.0)])
def test_price_lookup_takes_location_ids(location, expected):
    prices = TablePriceLookup({("671.1", 0): 40.0, ("671.2", 0): 42.0, ("671", 0): 41.0, ("pcc", 0): 30.0})
    assert prices.price_usd_per_mwh(location, 0) == expected


@pytest.mark.parametrize("table, location, message", [
    ({("671", 0): 1.0}, "675", "no price for location '675' interval 0"),
    ({("671", 0): 1.0}, "671.a", "price lookup: location '671.a' is not a location id"),
    ({("671", 0): 1.0}, "", "price lookup: location '' is not a location id"),
    ({("671", 0): 1.0}, "anywhere.1", "no price for location 'anywhere.1'"),
])
def test_unknown_or_malformed_location_is_named(table, location, message):
    with pytest.raises(PriceLookupError, match=message):
        TablePriceLookup(table).price_usd_per_mwh(location, 0)


def test_price_tables_refuse_malformed_or_repeated_locations(tmp_path):
    with pytest.raises(PriceLookupError, match="price table: location 'b 01'"):
        TablePriceLookup({("b 01", 0): 1.0})
    with pytest.raises(PriceLookupError, match="'B01' interval 0 given twice"):
        TablePriceLookup({("b01", 0): 1.0, ("B01", 0): 2.0})
    with pytest.raises(PriceLookupError, match="flat tariff: location '671.'"):
        FlatTariff(1.0).price_usd_per_mwh("671.", 0)
    csv = tmp_path / "dlmp.csv"
    csv.write_text("bus,phase,interval,dlmp_usd_per_mwh\nB671,1,0,40.0\nB671,x,0,41.0\n")
    with pytest.raises(PriceLookupError, match=r"dlmp.csv:3: .*'x'"):
        TablePriceLookup.from_dlmp_csv(csv)
    csv.write_text("bus,phase,interval,dlmp_usd_per_mwh\nB671,1,0,40.0\nb671,1,0,41.0\n")
    with pytest.raises(PriceLookupError, match="dlmp.csv:3: location 'b671.1' interval 0 given twice"):
        TablePriceLookup.from_dlmp_csv(csv)
    csv.write_text("bus,phase,interval,dlmp_usd_per_mwh\nB671,1,0,40.0\nB671,3,0,44.0\n")
    prices = TablePriceLookup.from_dlmp_csv(csv)
    assert prices.locations() == ["b671", "b671.1", "b671.3"] and prices.buses() == ["b671"]
    assert prices.price_usd_per_mwh("B671", 0) == 42.0


def test_market_te_imports_only_settlement_and_the_location_vocabulary():
    """ARCHITECTURE §8: market/te needs only a price lookup and market/settlement."""
    root = Path(__file__).resolve().parents[3] / "market" / "te"
    project = ("cloud", "edge_agent", "firmware_sim", "colorgrid", "market", "vocab", "bench")
    allowed = ("market.te", "market.settlement", "vocab.location")
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.split(".")[0] in project:
                    assert name.startswith(allowed), f"{path.name} imports {name}"
