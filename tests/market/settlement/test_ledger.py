"""Settlement ledger: rules, checkpoints k-of-n, inclusion proofs, tamper evidence, tokens."""
from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from market.settlement import canonical
from market.settlement.errors import CanonicalEncodingError, InsufficientSignatures, LedgerError
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, WitnessValidator, sign_reading, verify_proof
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.store import FakeLedgerStore
from market.settlement.verify import verify_ledger

from .conftest import SEED, add_meter, keys, new_ledger


def test_meter_reading_needs_registered_meter_key_of_that_participant(ledger_and_validators):
    ledger, _ = ledger_and_validators
    add_meter(ledger, "p1", export_wh=100)
    rogue = KeyPair.derive(99, "meter:p1")  # same id, different key
    reading = {"meter_id": "meter:p1", "participant_id": "p1", "interval": 1, "export_wh": 10**6,
               "import_wh": 0, "ts_ms": 0}
    with pytest.raises(LedgerError, match="signature does not verify"):
        ledger.record_meter_reading(reading, sign_reading(reading, rogue))
    unknown = KeyPair.derive(SEED, "meter:p2")
    reading2 = dict(reading, meter_id="meter:p2", participant_id="p2")
    with pytest.raises(LedgerError, match="not registered"):
        ledger.record_meter_reading(reading2, sign_reading(reading2, unknown))
    reading3 = dict(reading, participant_id="p9")  # p1's meter claiming p9's reading
    with pytest.raises(LedgerError, match="not registered to 'p9'"):
        ledger.record_meter_reading(reading3, sign_reading(reading3, KeyPair.derive(SEED, "meter:p1")))
    assert verify_ledger(ledger.store).ok


def test_mint_only_against_verified_delivery(ledger_and_validators):
    ledger, _ = ledger_and_validators
    r = add_meter(ledger, "p1", export_wh=1000)
    ledger.mint_delivery("p1", r, 600, 100_000, 0)
    with pytest.raises(LedgerError, match="exceeds verified export"):
        ledger.mint_delivery("p1", r, 401, 100_000, 0)
    with pytest.raises(LedgerError, match="belongs to 'p1'"):
        ledger.mint_delivery("p2", r, 1, 100_000, 0)
    with pytest.raises(LedgerError, match="mint only on verified delivery"):
        ledger.append("mint", {"account": "p1", "amount_ntok": 5, "reason": "gift"}, 0)
    with pytest.raises(LedgerError, match="amount_ntok"):
        ledger.transfer("p2", "p1", 7, "trade", 0, reading_seq=r, qty_wh=1, price_uusd_per_kwh=5)
    ledger.transfer("p2", "p1", 400 * 90_000, "trade", 0, reading_seq=r, qty_wh=400, price_uusd_per_kwh=90_000)
    assert ledger.state.balances == {"p1": 600 * 100_000 + 400 * 90_000, "p2": -400 * 90_000}
    with pytest.raises(LedgerError, match="burn reason"):
        ledger.burn("p1", 1, "whim", 0)
    ledger.burn("p1", 1_000, "grid_purchase", 0)
    rep = verify_ledger(ledger.store)
    assert rep.ok and rep.minted_ntok == 60_000_000 and rep.burned_ntok == 1_000


def test_credit_limit_and_floats_refused():
    ledger, _ = new_ledger(FakeLedgerStore(), credit_limit_ntok=50)
    ledger.transfer("a", "b", 50, "pay", 0)
    with pytest.raises(LedgerError, match="below credit limit"):
        ledger.transfer("a", "b", 1, "pay", 0)
    with pytest.raises(CanonicalEncodingError, match="payload.amount_ntok: float"):
        ledger.transfer("b", "a", 1.5, "pay", 0)
    assert ledger.state.balances == {"a": -50, "b": 50} and ledger.head_seq == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["mint", "transfer", "burn"]), st.integers(0, 3), st.integers(0, 3),
                          st.integers(1, 5_000)), max_size=40))
def test_tokens_are_conserved_under_any_operation_sequence(ops):
    ledger, _ = new_ledger(FakeLedgerStore(), credit_limit_ntok=10**7)
    readings = {p: add_meter(ledger, f"p{p}", export_wh=10_000) for p in range(4)}
    for op, a, b, amount in ops:
        try:
            if op == "mint":
                ledger.mint_delivery(f"p{a}", readings[a], amount, 3, 0)
            elif op == "transfer":
                ledger.transfer(f"p{a}", f"p{b}", amount, "pay", 0)
            else:
                ledger.burn(f"p{a}", amount, "penalty", 0)
        except LedgerError:
            pass  # refused operations must leave the state unchanged
        st_ = ledger.state
        assert sum(st_.balances.values()) == st_.minted_ntok - st_.burned_ntok
    rep = verify_ledger(ledger.store)
    assert rep.ok and rep.balances_ntok == dict(sorted(ledger.state.balances.items()))


def test_checkpoint_k_of_n_and_inclusion_proofs(ledger_and_validators):
    ledger, validators = ledger_and_validators
    for i in range(10):
        ledger.transfer("a", "b", i + 1, "pay", i)
    cp1 = ledger.checkpoint(1, validators[:2])  # 2 of 3 suffice
    for i in range(5):
        ledger.transfer("b", "a", i + 1, "pay", i)
    with pytest.raises(InsufficientSignatures):
        ledger.checkpoint(2, validators[:1])
    impostor = WitnessValidator(KeyPair.derive(7, "validator:dso"))
    with pytest.raises(InsufficientSignatures):
        ledger.checkpoint(2, [validators[0], impostor])
    ledger.checkpoint(2, validators)
    pubs = {v.validator_id: v.key.public_hex for v in validators}
    for seq in (0, 5, cp1.last_seq, cp1.last_seq + 1, ledger.head_seq):
        proof = ledger.prove(seq)
        assert verify_proof(proof, pubs, 2)
        forged = proof.__class__(**{**proof.__dict__, "entry_hash": b"\x01" * 32})
        assert not verify_proof(forged, pubs, 2)
        assert not verify_proof(proof, pubs, 4)
    rep = verify_ledger(ledger.store)
    assert rep.ok and rep.checkpoints_checked == 2 and rep.uncovered_entries == 0


def test_validator_refuses_a_statement_that_does_not_match(ledger_and_validators):
    ledger, validators = ledger_and_validators
    ledger.transfer("a", "b", 1, "pay", 0)
    bogus = canonical.encode({"period": 1, "first_seq": 0, "last_seq": 1, "tree_size": 2,
                              "root": "00" * 32, "head": "00" * 32})
    with pytest.raises(LedgerError, match="does not match"):
        validators[0].cosign(bogus, ledger.store)


def _sqlite_ledger(tmp_path, n=30):
    store = SQLiteStore(tmp_path / "ledger.db")
    ledger, validators = new_ledger(store)
    r = add_meter(ledger, "p1", export_wh=10_000)
    with ledger.batch():
        for i in range(n):
            ledger.transfer("p2", "p1", 1_000, "trade", i, reading_seq=r, qty_wh=10, price_uusd_per_kwh=100)
    ledger.checkpoint(1, validators)
    ledger.transfer("p2", "p1", 5, "pay", 99)
    store.close()
    return tmp_path / "ledger.db"


def _edit(path, sql, *args):
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


def _body(path, seq):
    db = sqlite3.connect(path)
    body = db.execute("SELECT body FROM entries WHERE seq=?", (seq,)).fetchone()[0]
    db.close()
    return body


def test_tamper_pinpoints_the_modified_entry(tmp_path):
    import hashlib

    path = _sqlite_ledger(tmp_path)
    assert verify_ledger(SQLiteStore(path)).ok
    # 1. change an amount in place
    body = _body(path, 10)
    forged = body.replace(b'"amount_ntok":1000', b'"amount_ntok":9000')
    assert forged != body
    _edit(path, "UPDATE entries SET body=? WHERE seq=10", forged)
    rep = verify_ledger(SQLiteStore(path))
    assert not rep.ok and rep.bad_seq == 10 and "hash" in rep.reason
    # 2. ... and recompute its hash: the operator's signature no longer matches (still entry 10)
    _edit(path, "UPDATE entries SET hash=? WHERE seq=10", hashlib.sha256(forged).digest())
    rep = verify_ledger(SQLiteStore(path), workers=2)
    assert not rep.ok and rep.bad_seq == 10 and "signature" in rep.reason
    # 3. restore, then delete an entry in the middle
    _edit(path, "UPDATE entries SET body=?, hash=? WHERE seq=10", body, hashlib.sha256(body).digest())
    assert verify_ledger(SQLiteStore(path)).ok
    _edit(path, "DELETE FROM entries WHERE seq=7")
    rep = verify_ledger(SQLiteStore(path))
    assert not rep.ok and rep.bad_seq == 7 and "missing" in rep.reason


def test_tamper_checkpoint_and_truncation_detected(tmp_path):
    path = _sqlite_ledger(tmp_path)
    db = sqlite3.connect(path)
    sigs = db.execute("SELECT signatures FROM checkpoints WHERE period=1").fetchone()[0]
    db.close()
    kept = canonical.encode(canonical.decode(sigs)[:1])  # only one of three signatures left
    _edit(path, "UPDATE checkpoints SET signatures=? WHERE period=1", kept)
    rep = verify_ledger(SQLiteStore(path))
    assert not rep.ok and rep.bad_checkpoint == 1 and "need 2" in rep.reason
    _edit(path, "UPDATE checkpoints SET signatures=? WHERE period=1", sigs)
    _edit(path, "DELETE FROM entries WHERE seq >= 20")  # drop a checkpointed tail
    rep = verify_ledger(SQLiteStore(path))
    assert not rep.ok and rep.bad_checkpoint == 1 and "entries removed" in rep.reason


def test_trusted_operator_key_and_forged_signer(tmp_path):
    path = _sqlite_ledger(tmp_path)
    operator, _ = keys()
    assert verify_ledger(SQLiteStore(path), trusted_operator_hex=operator.public_hex).ok
    assert not verify_ledger(SQLiteStore(path), trusted_operator_hex=KeyPair.derive(1, "x").public_hex).ok
    # a whole rewritten ledger signed by another operator passes only without the trusted key
    store = SQLiteStore(tmp_path / "other.db")
    Ledger.create(store, KeyPair.derive(5, "operator"), [("v", KeyPair.derive(5, "v").public_hex)], 1, "x")
    assert verify_ledger(store).ok
    rep = verify_ledger(store, trusted_operator_hex=operator.public_hex)
    assert not rep.ok and rep.bad_seq == 0


def test_reopen_continues_the_chain_and_failed_batch_leaves_nothing(tmp_path):
    path = _sqlite_ledger(tmp_path)
    operator, _ = keys()
    ledger = Ledger(SQLiteStore(path), operator)
    head = ledger.head_seq
    with pytest.raises(LedgerError):
        with ledger.batch():
            ledger.transfer("p1", "p2", 1, "pay", 0)
            ledger.burn("p1", 1, "not-a-policy", 0)
    assert ledger.head_seq == head and ledger.store.count() == head + 1
    ledger.transfer("p1", "p2", 1, "pay", 0)
    fake = FakeLedgerStore()
    l2, _ = new_ledger(fake)
    fake.fail_next_write = True
    with pytest.raises(OSError):
        l2.transfer("a", "b", 1, "pay", 0)
    assert l2.head_seq == 0 and l2.state.balances == {}
    assert verify_ledger(ledger.store).ok


def test_canonical_encoding_is_stable_and_refuses_floats():
    import numpy as np

    value = {"b": [1, "x", None, True], "a": {"z": b"\x01\x02", "y": np.int64(5)}}
    assert canonical.encode(value) == b'{"a":{"y":5,"z":{"$b":"0102"}},"b":[1,"x",null,true]}'
    assert canonical.encode({"a": 1, "b": 2}) == canonical.encode({"b": 2, "a": 1})
    assert canonical.unbytes(canonical.decode(canonical.encode(b"\xff"))) == b"\xff"
    for bad, field in (({"x": {"p": 0.5}}, "value.x.p"), ({"x": [1, float("nan")]}, r"value.x\[1\]"),
                       ({1: 2}, "dict key")):
        with pytest.raises(CanonicalEncodingError, match=field):
            canonical.encode(bad)
