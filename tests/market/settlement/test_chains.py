"""Sidechains per local market, a main chain recording their checkpoints, cross-chain proofs and
LEM-to-LEM exchange pairs: each kind of tampering is detected and named."""
from __future__ import annotations

import sqlite3

import pytest

from market.settlement import canonical
from market.settlement.chains import (CrossChainProof, check_against_main, check_exchange_pairs, prove_cross,
                                      record_checkpoints, register_sidechain, settle_exchange, verify_cross_proof)
from market.settlement.errors import LedgerError
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, WitnessValidator
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.verify import verify_ledger


def chain(path, name, seed=3):
    operator = KeyPair.derive(seed, f"operator:{name}")
    validators = [KeyPair.derive(seed, f"validator:{name}:{v}") for v in ("dso", "aggregator", "community")]
    ledger = Ledger.create(SQLiteStore(path), operator, [(v.key_id, v.public_hex) for v in validators], 2, name,
                           credit_limit_ntok=10**12)
    return ledger, [WitnessValidator(v) for v in validators]


@pytest.fixture
def world(tmp_path):
    """Two LEM sidechains and the main chain; A exports 2 kWh to B; everything checkpointed and recorded."""
    main, main_validators = chain(tmp_path / "main.sqlite", "main")
    a, va = chain(tmp_path / "a.sqlite", "lem-a")
    b, vb = chain(tmp_path / "b.sqlite", "lem-b")
    for side in (a, b):
        register_sidechain(main, side, 0)
    a.append_many([("transfer", {"from": "p1", "to": "p2", "amount_ntok": 10 + i, "reason": "pay", "ref": ""}, i)
                   for i in range(20)])
    export_seq, import_seq = settle_exchange(a, b, "x-1", "lem:a", "lem:b", 2_000, 50_000, 100)
    a.checkpoint(1, va)
    b.checkpoint(1, vb)
    a.transfer("p2", "p1", 5, "pay", 200)
    a.checkpoint(2, va)
    for side in (a, b):
        record_checkpoints(main, side.store, 300)
    main.checkpoint(1, main_validators)
    return {"main": main, "a": a, "b": b, "va": va, "vb": vb, "export_seq": export_seq, "import_seq": import_seq,
            "paths": {k: tmp_path / f"{k}.sqlite" for k in ("main", "a", "b")}}


def test_main_chain_records_sidechain_checkpoints_and_everything_verifies(world):
    main, a, b = world["main"], world["a"], world["b"]
    assert [len(main.state.chains[c]["records"]) for c in ("lem-a", "lem-b")] == [2, 1]
    for ledger in (main, a, b):
        assert verify_ledger(ledger.store, workers=1).ok
    assert check_against_main(a.store, main.store) == ([], 0)
    assert check_exchange_pairs([a.store, b.store]) == []
    # the pair conserves tokens across the chains: A's clearing account for B mirrors B's for A
    assert a.state.balances["chain:lem-b"] == -b.state.balances["chain:lem-a"] == -100_000_000
    assert record_checkpoints(main, a.store, 400) == []  # nothing new: records are never repeated


def test_cross_chain_proof_verifies_offline_and_forgeries_fail(world):
    main, a = world["main"], world["a"]
    pubs, k = dict(main.state.validators), main.state.threshold_k
    for seq in (0, 7, world["export_seq"], a.head_seq):
        doc = prove_cross(a, main, seq).to_json()
        proof = CrossChainProof.from_json(canonical.decode(canonical.encode(doc)))
        assert verify_cross_proof(proof, pubs, k) == ""
    proof = prove_cross(a, main, 7)
    forged = CrossChainProof(proof.side.__class__(**{**proof.side.__dict__, "entry_hash": b"\1" * 32}),
                             proof.main_body, proof.main, proof.registration_body, proof.registration)
    assert "not in the sidechain checkpoint" in verify_cross_proof(forged, pubs, k)
    other = prove_cross(world["b"], main, 1)  # B's record presented as A's
    mixed = CrossChainProof(proof.side, other.main_body, other.main, proof.registration_body, proof.registration)
    assert "different chains" in verify_cross_proof(mixed, pubs, k)
    rogue = {vid: KeyPair.derive(99, vid).public_hex for vid in pubs}
    assert "main validators" in verify_cross_proof(proof, rogue, k)


def test_tampered_sidechain_entry_is_named(world):
    a, main = world["a"], world["main"]
    path = world["paths"]["a"]
    db = sqlite3.connect(path)
    body = db.execute("SELECT body FROM entries WHERE seq = 5").fetchone()[0]
    db.execute("UPDATE entries SET body = ? WHERE seq = 5", (body.replace(b'"amount_ntok":14', b'"amount_ntok":99'),))
    db.commit()
    db.close()
    rep = verify_ledger(SQLiteStore(path, create=False))
    assert not rep.ok and rep.bad_seq == 5 and "modified" in rep.reason


def test_rewritten_and_resigned_sidechain_is_named_by_the_main_chain(world, tmp_path):
    """A's operator and validators collude and rebuild A with a different amount: A alone verifies,
    the main chain's record of it does not match."""
    main = world["main"]
    forged, va = chain(tmp_path / "forged.sqlite", "lem-a")
    forged.append_many([("transfer", {"from": "p1", "to": "p2", "amount_ntok": 10 + i + (i == 4), "reason": "pay",
                                      "ref": ""}, i) for i in range(20)])
    forged.checkpoint(1, va)
    assert verify_ledger(forged.store).ok
    problems, unrecorded = check_against_main(forged.store, main.store)
    assert unrecorded == 0 and len(problems) == 2
    assert "checkpoint 1 differs from its main-chain record" in problems[0]
    assert "checkpoint 2 recorded at main entry" in problems[1] and "dropped" in problems[1]


def test_forged_main_chain_record_is_named(world):
    main, a = world["main"], world["a"]
    path = world["paths"]["main"]
    record_seq = main.state.chains["lem-a"]["records"][0]
    db = sqlite3.connect(path)
    body = db.execute("SELECT body FROM entries WHERE seq = ?", (record_seq,)).fetchone()[0]
    st = canonical.decode(body)["payload"]["statement"]
    forged_root = canonical.decode(st.encode())["root"]
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (body.replace(forged_root.encode(), b"ab" * 32), record_seq))
    db.commit()
    db.close()
    rep = verify_ledger(SQLiteStore(path, create=False))
    assert not rep.ok and rep.bad_seq == record_seq
    # and a record with forged validator signatures is refused on append
    with pytest.raises(LedgerError, match="chain checkpoint refused"):
        Ledger(SQLiteStore(path, create=False))  # reopening replays the rules: the forged record stops it
    a.transfer("p1", "p2", 1, "pay", 500)
    cp = a.checkpoint(3, world["va"])
    sigs = [[vid, "00" * 64] for vid, _ in canonical.decode(cp.signatures)]
    ledger = world["main"]
    with pytest.raises(LedgerError, match="chain checkpoint refused"):
        ledger.append("chain_checkpoint", {"ledger_id": "lem-a", "statement": cp.statement.decode(),
                                           "signatures": sigs}, 600)


def test_forged_record_signatures_written_into_the_store_are_named_by_verify(world, tmp_path):
    main, a = world["main"], world["a"]
    a.transfer("p1", "p2", 1, "pay", 500)
    cp = a.checkpoint(3, world["va"])
    sigs = canonical.decode(cp.signatures)
    sigs[0][1] = sigs[0][1][:-2] + ("00" if sigs[0][1][-2:] != "00" else "01")
    main.state.apply = lambda *args, **kwargs: None  # a malicious main operator skipping the rules
    seq = main.append("chain_checkpoint", {"ledger_id": "lem-a", "statement": cp.statement.decode(),
                                           "signatures": sigs}, 700)
    rep = verify_ledger(main.store)
    assert not rep.ok and rep.bad_seq == seq and "does not verify" in rep.reason


def test_exchange_pairs_mismatch_and_replay_are_named(world, tmp_path):
    a, b = world["a"], world["b"]
    with pytest.raises(LedgerError, match="already settled"):
        settle_exchange(a, b, "x-1", "lem:a", "lem:b", 2_000, 50_000, 800)  # replay refused on append
    # a mismatched pair: B books the import of x-2 with another quantity than A's export
    a.append("exchange", {"exchange_id": "x-2", "direction": "export", "counter_chain": "lem-b", "account": "lem:a",
                          "qty_wh": 100, "price_uusd_per_kwh": 10, "amount_ntok": 1_000}, 900)
    head = a.store.head()
    b.append("exchange", {"exchange_id": "x-2", "direction": "import", "counter_chain": "lem-a", "account": "lem:b",
                          "qty_wh": 90, "price_uusd_per_kwh": 10, "amount_ntok": 900, "counter_seq": head.seq,
                          "counter_hash": head.hash.hex()}, 900)
    # an export whose import never came (e.g. a crash between the two appends)
    a.append("exchange", {"exchange_id": "x-3", "direction": "export", "counter_chain": "lem-b", "account": "lem:a",
                          "qty_wh": 1, "price_uusd_per_kwh": 10, "amount_ntok": 10}, 950)
    # the same exchange replayed on a third chain that claims to be B's counterpart too
    c, _ = chain(tmp_path / "c.sqlite", "lem-c")
    c.append("exchange", {"exchange_id": "x-1", "direction": "import", "counter_chain": "lem-a", "account": "lem:c",
                          "qty_wh": 2_000, "price_uusd_per_kwh": 50_000, "amount_ntok": 100_000_000,
                          "counter_seq": world["export_seq"], "counter_hash": "00" * 32}, 960)
    problems = check_exchange_pairs([a.store, b.store, c.store])
    assert problems == [
        "exchange 'x-1': settled more than once (lem-a entry 21, lem-b entry 1, lem-c entry 1; replayed)",
        "exchange 'x-2': lem-a entry 23 and lem-b entry 2 disagree on qty_wh, amount_ntok",
        "exchange 'x-3': export at lem-a entry 24 has no import on 'lem-b'",
    ]
    for ledger in (a, b, c):
        assert verify_ledger(ledger.store).ok  # each chain alone is fine: only the pair check sees it
