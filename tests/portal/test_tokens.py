"""Tokens: shown once, stored as a hash, scoped, expiring, revocable — in both stores."""
import hashlib
import sqlite3

import pytest

from portal.tokens import FakeTokenStore, SqliteTokenStore, TokenError, hash_token


@pytest.fixture(params=["fake", "sqlite"])
def store(request, tmp_path):
    s = FakeTokenStore() if request.param == "fake" else SqliteTokenStore(tmp_path / "portal.db")
    yield s
    s.close()


def test_create_then_authenticate(store):
    token, rec = store.create("dso", ["fleet:read", "market:read"], 60, ["671.1"], at_ms=1_000)
    assert token.startswith(f"cgp_{rec.token_id}_") and len(token) > 50
    assert rec.token_hash == hashlib.sha256(token.encode()).hexdigest()
    res = store.authenticate(token, at_ms=2_000)
    assert res.reason == "" and res.record.stakeholder == "dso"
    assert res.record.scopes == ("fleet:read", "market:read") and res.record.groups == ("671.1",)
    assert res.record.has_scope("fleet:read") and not res.record.has_scope("goals:write")
    assert res.record.may_group("671.1") and not res.record.may_group("671.2")


def test_expiry_and_revocation(store):
    token, rec = store.create("agg", ["goals:write"], 10, at_ms=0)
    assert store.authenticate(token, at_ms=9_999).record is not None
    assert store.authenticate(token, at_ms=10_000).reason == "expired"
    token2, rec2 = store.create("agg", ["goals:write"], 10, at_ms=0)
    store.revoke(rec2.token_id, at_ms=5)
    assert store.authenticate(token2, at_ms=6).reason == "revoked"
    token3, _ = store.create("agg", ["admin"], 10, at_ms=0)
    store.revoke(token3, at_ms=5)                                    # by the token text too
    assert store.authenticate(token3, at_ms=6).reason == "revoked"
    assert sorted(r.status(6) for r in store.tokens()) == ["active", "revoked", "revoked"]


@pytest.mark.parametrize("bad", ["", "Bearer x", "cgp_000000000000_" + "a" * 43, "x" * 10_000, "cgp__", "\x00"])
def test_unknown_or_malformed_tokens_are_refused(store, bad):
    store.create("dso", ["fleet:read"], 60)
    assert store.authenticate(bad).reason == "unknown"


def test_a_forged_secret_with_a_real_id_is_refused(store):
    token, rec = store.create("dso", ["fleet:read"], 60)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert store.authenticate(forged).reason == "unknown"
    with pytest.raises(TokenError, match="^token: no such token"):
        store.revoke(forged)


@pytest.mark.parametrize("args, field", [
    (("", ["admin"], 60), "stakeholder"),
    (("a/b", ["admin"], 60), "stakeholder"),
    (("dso", [], 60), "scope"),
    (("dso", ["root"], 60), "scope"),
    (("dso", ["admin"], 0), "ttl"),
    (("dso", ["admin"], float("nan")), "ttl"),
    (("dso", ["admin"], 60, ["bad group"]), "group"),
])
def test_bad_fields_are_named(store, args, field):
    with pytest.raises(TokenError, match=f"^{field}: "):
        store.create(*args)


def test_revoke_unknown_names_the_token(store):
    with pytest.raises(TokenError, match="^token: "):
        store.revoke("0123456789ab")
    with pytest.raises(TokenError, match="^token: "):
        store.revoke("not a token")


def test_sqlite_keeps_only_the_hash(tmp_path):
    s = SqliteTokenStore(tmp_path / "p.db")
    token, rec = s.create("dso", ["admin"], 60)
    s.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "p.db").iterdump())
    assert token not in dump and token.split("_", 2)[2] not in dump and hash_token(token) in dump


def test_revocation_from_another_connection_is_seen_at_once(tmp_path):
    server, cli = SqliteTokenStore(tmp_path / "p.db"), SqliteTokenStore(tmp_path / "p.db")
    token, rec = server.create("dso", ["fleet:read"], 600)
    assert server.authenticate(token).record is not None
    cli.revoke(rec.token_id)
    assert server.authenticate(token).reason == "revoked"
