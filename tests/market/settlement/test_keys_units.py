"""Keys and integer units of the ledger; market/settlement stands alone (ARCHITECTURE §8)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from market.settlement.errors import KeyError_, SignatureError, UnitError
from market.settlement.keys import KeyPair, KeyRegistry, verify
from market.settlement.units import price_uusd_per_kwh_from_usd_per_mwh, tokens_from_ntok, value_ntok


def test_unit_conversions_are_exact_and_refuse_nan():
    assert price_uusd_per_kwh_from_usd_per_mwh(45.5) == 45_500
    assert value_ntok(1_000, 45_500) == 45_500_000  # 1 kWh at 45.5 USD/MWh = 0.0455 USD
    assert tokens_from_ntok(45_500_000) == 0.0455
    with pytest.raises(UnitError, match="dlmp: non-finite"):
        price_uusd_per_kwh_from_usd_per_mwh(float("nan"), "dlmp")


def test_registry_binds_a_key_id_to_one_key_and_refuses_short_keys():
    alice, mallory = KeyPair.derive(1, "alice"), KeyPair.derive(1, "mallory")
    registry = KeyRegistry()
    registry.register("alice", "participant", alice.public_hex, "alice")
    with pytest.raises(KeyError_, match="different public key"):
        registry.register("alice", "participant", mallory.public_hex, "alice")
    with pytest.raises(KeyError_, match="32 bytes"):
        verify("00" * 31, b"\x00" * 64, b"m")
    assert KeyPair.derive(1, "alice").sign(b"x") == alice.sign(b"x")  # deterministic (RFC 8032)


def test_openssl_fallback_gives_the_same_signatures(monkeypatch):
    import market.settlement.keys as keys

    key = KeyPair.derive(2, "k")
    with_sodium = key.sign(b"msg")
    monkeypatch.setattr(keys, "_lib", None)
    monkeypatch.setattr(keys, "_nacl_sign", None)
    monkeypatch.setattr(keys, "_nacl_open", None)
    assert key.sign(b"msg") == with_sodium
    assert key.sign_many([b"msg", b"m2"]) == [with_sodium, key._private.sign(b"m2")]
    verify(key.public_hex, with_sodium, b"msg")
    with pytest.raises(SignatureError):
        verify(key.public_hex, with_sodium, b"msh")
    with pytest.raises(KeyError_, match="32 bytes"):
        verify("00" * 31, with_sodium, b"msg")


def test_direct_libsodium_signing_gives_pynacls_and_openssls_signatures():
    """KeyPair.sign / sign_many call libsodium's crypto_sign without PyNaCl's wrapper: the bytes of
    nacl.bindings.crypto_sign and of OpenSSL's Ed25519 (RFC 8032 is deterministic), any length."""
    import hashlib
    import random

    from nacl.bindings import crypto_sign

    key = KeyPair.derive(3, "operator")
    rng = random.Random(7)
    messages = [b"", b"x", bytes(1000)] + [hashlib.sha256(str(i).encode()).digest() for i in range(300)] \
        + [rng.randbytes(rng.randrange(1, 200)) for _ in range(50)]
    expected = [crypto_sign(m, key._sodium_secret)[:64] for m in messages]
    assert expected == [key._private.sign(m) for m in messages]
    assert [key.sign(m) for m in messages] == expected
    assert key.sign_many(messages) == expected
    assert key.sign_many(messages, threads=2) == expected
    assert key.sign(bytearray(b"x")) == expected[1]


def test_valid_many_agrees_with_is_valid_on_good_and_bad_signatures():
    from market.settlement.keys import is_valid, valid_many

    key, other = KeyPair.derive(3, "a"), KeyPair.derive(3, "b")
    sig = key.sign(b"message")
    items = [(key.public_hex, sig, b"message"),            # good
             (key.public_hex, sig, b"messagf"),            # another message
             (other.public_hex, sig, b"message"),          # another key
             (key.public_hex, sig[:63], b"message"),       # short signature
             (key.public_hex, bytes([sig[0] ^ 1]) + sig[1:], b"message"),
             ("zz" * 32, sig, b"message"),                 # not hex
             ("00" * 31, sig, b"message"),                 # 31-byte key
             (key.public_hex, key.sign(b"m" * 500), b"m" * 500)]
    assert valid_many(items) == [is_valid(*item) for item in items] == [True] + [False] * 6 + [True]
    assert valid_many([]) == []


def test_seed_derived_keys_are_pinned():
    """Derivation is domain-separated by "colorgrid.te|" (kept when the ledger left market/te):
    existing ledgers and reruns depend on these exact keys."""
    assert KeyPair.derive(11, "operator").public_hex == \
        "2e4bc388d17f86a5cfe75bf013887bc2911aadf9ff77a4cef4aa9410dad1df89"


def test_market_settlement_imports_nothing_else_of_the_project():
    """ARCHITECTURE §8: market/settlement imports nothing else of the project."""
    root = Path(__file__).resolve().parents[3] / "market" / "settlement"
    project = ("cloud", "edge_agent", "firmware_sim", "colorgrid", "market", "vocab", "bench")
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.split(".")[0] in project:
                    assert name.startswith("market.settlement"), f"{path.name} imports {name}"
