"""Orders, participants, keys: validation errors name the field; identities are bound to keys."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from market.te.errors import KeyError_, OrderError, ParticipantError, PriceLookupError, SignatureError
from market.te.keys import KeyPair, KeyRegistry, verify
from market.te.model import Order, Participant, order_from_mapping, sign_order, validate_order, verify_order
from market.te.prices import FlatTariff, price_uusd_per_kwh
from market.te.units import price_uusd_per_kwh_from_usd_per_mwh, value_ntok


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
    with pytest.raises(KeyError_, match="different public key"):
        registry.register("alice", "participant", mallory.public_hex, "alice")
    with pytest.raises(KeyError_, match="32 bytes"):
        verify("00" * 31, b"\x00" * 64, b"m")
    assert KeyPair.derive(1, "alice").sign(b"x") == alice.sign(b"x")  # deterministic (RFC 8032)


def test_unit_conversions_are_exact_and_refuse_nan():
    assert price_uusd_per_kwh_from_usd_per_mwh(45.5) == 45_500
    assert value_ntok(1_000, 45_500) == 45_500_000  # 1 kWh at 45.5 USD/MWh = 0.0455 USD
    assert price_uusd_per_kwh(FlatTariff(250.0), "anywhere", 7) == 250_000
    with pytest.raises(PriceLookupError, match="non-finite"):
        price_uusd_per_kwh_from_usd_per_mwh(float("nan"))


def test_market_te_imports_no_device_or_cloud_layer():
    """ARCHITECTURE §8: market/te needs only a price lookup."""
    root = Path(__file__).resolve().parents[3] / "market" / "te"
    forbidden = ("cloud", "edge_agent", "firmware_sim", "colorgrid", "market.network", "market.lem", "market.vpp")
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_openssl_fallback_gives_the_same_signatures(monkeypatch):
    import market.te.keys as keys

    key = KeyPair.derive(2, "k")
    with_sodium = key.sign(b"msg")
    monkeypatch.setattr(keys, "_nacl_sign", None)
    monkeypatch.setattr(keys, "_nacl_open", None)
    assert key.sign(b"msg") == with_sodium
    verify(key.public_hex, with_sodium, b"msg")
    with pytest.raises(SignatureError):
        verify(key.public_hex, with_sodium, b"msh")
    with pytest.raises(KeyError_, match="32 bytes"):
        verify("00" * 31, with_sodium, b"msg")
