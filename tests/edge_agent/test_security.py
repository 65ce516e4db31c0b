"""HMAC-SHA256 by hand vs CPython's hmac; vector/command guards reject forged, expired, replayed."""
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings, strategies as st

from edge_agent import codec, security

KEY = bytes(range(32))
KEYS = {"k1": KEY}


@given(st.binary(max_size=200), st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_hmac_matches_cpython(key, msg):
    assert security.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_rfc4231_case_2():
    mac = security.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert security.hexlify(mac) == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def _vec(round_id=1, issued=1000, ttl=4000, key=KEY, key_id="k1", group="g"):
    return codec.decode_vector(security.make_vector(group, round_id, [0.5, 1.0], [0.25, 0.0],
                                                    issued, ttl, key_id, key))


def test_signature_over_millionths_is_float_format_independent():
    v = _vec()
    v2 = dict(v, p_on=[0.5000000000000001, 1.0])  # same millionths, other float text
    assert security.verify(v2, KEYS) == ""
    v3 = dict(v, p_on=[0.500001, 1.0])
    assert security.verify(v3, KEYS) == "bad signature"


def test_guard_accepts_then_rejects_replay_and_older():
    guard = security.VectorGuard(KEYS, "g")
    assert guard.check(_vec(round_id=5), 2000) == ""
    assert guard.check(_vec(round_id=5), 2000).startswith("replay")
    assert guard.check(_vec(round_id=4), 2000).startswith("replay")
    assert guard.check(_vec(round_id=6), 2000) == ""
    assert guard.last_round_id == 6


@pytest.mark.parametrize("vec, now, reason", [
    (dict(key=b"x" * 32), 2000, "bad signature"),
    (dict(key_id="k9"), 2000, "unknown key_id"),
    (dict(), 5000, "expired"),
    (dict(issued=60000), 2000, "issued in the future"),
    (dict(ttl=600000), 2000, "lifetime longer"),
    (dict(group="h"), 2000, "wrong group"),
])
def test_guard_rejections(vec, now, reason):
    guard = security.VectorGuard(KEYS, "g")
    assert guard.check(_vec(**vec), now).startswith(reason)
    assert guard.last_round_id == -1


def test_tampered_field_breaks_signature():
    raw = json.loads(security.make_vector("g", 3, [0.5, 0.0], [0.0, 0.0], 0, 1000, "k1", KEY))
    raw["round_id"] = 4
    assert security.verify(codec.decode_vector(json.dumps(raw)), KEYS) == "bad signature"


def test_cmd_guard_txn_once():
    guard = security.CmdGuard(KEYS, window=2)
    cmd = lambda txn, ts=0: codec.decode_cmd(security.make_cmd(txn, "rebirth", ts, 1000, "k1", KEY))
    assert guard.check(cmd("a"), 10) == ""
    assert guard.check(cmd("a"), 10).startswith("replay")
    assert guard.check(cmd("b"), 10) == "" and guard.check(cmd("c"), 10) == ""
    assert guard.check(cmd("d"), 5000) == "expired"
