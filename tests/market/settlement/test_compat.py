"""The ledger's bytes are fixed: a ledger built today hashes and signs exactly as before the fast
paths (batch signing, template-encoded entry bodies, in-memory checkpoint roots) were added.

GOLDEN was computed with the per-entry code of commit 6cbba9c (canonical.encode of every body,
one signature per append); any change to the encoding, layouts or domain strings breaks it."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings, strategies as st

from market.settlement import canonical
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, WitnessValidator, entry_body, sign_reading
from market.settlement.store import FakeLedgerStore
from market.settlement.verify import verify_ledger

GOLDEN = "d3aa75d2b4e5b60d84035359578e9d0ee309eeeceee53f1f4e869d55b30e1bd8"


def build(batched_helpers: bool, sign_threads: int = 1) -> Ledger:
    op = KeyPair.derive(5, "operator")
    vs = [KeyPair.derive(5, f"validator:{n}") for n in ("dso", "agg", "com")]
    led = Ledger.create(FakeLedgerStore(), op, [(v.key_id, v.public_hex) for v in vs], 2, "golden", ts_ms=1,
                        credit_limit_ntok=10**12)
    led.sign_threads = sign_threads
    m = KeyPair.derive(5, "meter:p1")
    with led.batch():
        led.register_key(m.key_id, "meter", m.public_hex, "p1", 2)
        led.register_key("p2", "participant", KeyPair.derive(5, "p2").public_hex, "p2", 2)
        r = {"meter_id": m.key_id, "participant_id": "p1", "interval": 3, "export_wh": 5000, "import_wh": 7,
             "ts_ms": 2_700_000}
        s = led.record_meter_reading(r, sign_reading(r, m))
        led.mint_delivery("p1", s, 1000, 40_000, 2_700_001, ref="grid \u00e9\"x")
        led.transfer("p2", "p1", 500 * 90_000, "trade", 2_700_002, ref="t1", reading_seq=s, qty_wh=500,
                     price_uusd_per_kwh=90_000)
    led.checkpoint(1, [WitnessValidator(v) for v in vs])
    transfers = [("transfer", {"from": "p1", "to": "p2", "amount_ntok": 10 + i, "reason": "pay", "ref": ""},
                  3_000_000 + i) for i in range(5)]
    if batched_helpers:
        led.append_many(transfers)
    else:
        for kind, payload, ts_ms in transfers:
            led.append(kind, payload, ts_ms)
    led.burn("p2", 3, "penalty", 3_100_000, ref="late")
    led.checkpoint(2, [WitnessValidator(v) for v in vs])
    return led


def digest(led: Ledger) -> str:
    h = hashlib.sha256()
    for row in led.store.rows:
        h.update(row.hash + row.sig)
    for cp in led.store.cps:
        h.update(cp.statement + cp.signatures)
    return h.hexdigest()


def test_ledger_bytes_unchanged_by_the_fast_paths():
    for batched, threads in ((False, 1), (True, 1), (True, 2)):  # 2: signatures split over 2 threads
        led = build(batched, threads)
        assert digest(led) == GOLDEN
        assert verify_ledger(led.store).ok


_scalar = st.one_of(st.integers(-2**70, 2**70), st.text(max_size=8), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.one_of(_scalar, st.lists(_scalar, max_size=2),
                                                      st.dictionaries(st.text(max_size=3), _scalar, max_size=2)),
                       max_size=6),
       st.integers(0, 2**40), st.integers(0, 2**45), st.text(min_size=1, max_size=8))
def test_template_entry_body_equals_the_canonical_encoding(payload, seq, ts_ms, signer):
    prev = hashlib.sha256(str(seq).encode()).digest()
    expected = canonical.encode({"seq": seq, "prev": prev.hex(), "kind": "transfer", "signer": signer,
                                 "ts_ms": ts_ms, "payload": payload})
    assert entry_body(seq, prev, "transfer", signer, ts_ms, payload) == expected


def test_flat_templates_with_percent_keys_and_any_insertion_order():
    """The per-key-set template is a %-format: keys holding '%' and the same keys given in another
    order (another cache entry) still give the generic encoder's bytes."""
    for payload in ({"a%s": 1, "%": "x%d", "b": True, "n": None}, {"n": None, "b": True, "%": "x%d", "a%s": 1},
                    {}, {"ü": "é", "z": -3}):
        assert canonical.encode_flat(payload).encode("ascii") == canonical.encode(payload)
    assert canonical.encode_flat({1: 2}) is None and canonical.encode_flat({"a": 1.5}) is None


def _pay(start: int, stop: int, bad: int | None = None) -> list:
    return [("transfer", {"from": f"p{i % 7}", "to": f"p{(i + 1) % 7}", "amount_ntok": 0 if i == bad else 5 + i,
                          "reason": "pay", "ref": ""}, i) for i in range(start, stop)]


def test_threaded_signing_gives_the_same_rows_and_fails_whole():
    """append_many with sign_threads > 1 (the batch's signatures split over threads at commit): the
    rows of the one-thread path; an entry refused late in a batch leaves store and state untouched."""
    ledgers = []
    for threads in (1, 2, 3):
        op, v = KeyPair.derive(6, "operator"), KeyPair.derive(6, "validator")
        led = Ledger.create(FakeLedgerStore(), op, [(v.key_id, v.public_hex)], 1, "overlap", credit_limit_ntok=10**9)
        led.sign_threads = threads
        assert led.append_many(_pay(0, 700)) == list(range(1, 701))
        ledgers.append(led)
    assert ledgers[0].store.rows == ledgers[1].store.rows == ledgers[2].store.rows
    led = ledgers[2]
    before = (list(led.store.rows), dict(led.state.balances), led.head_seq)
    try:
        led.append_many(_pay(700, 1400, bad=1300))  # refused after 600 entries of the batch passed
    except Exception as exc:  # noqa: BLE001 - the error is asserted below
        assert "amount_ntok" in str(exc)
    else:
        raise AssertionError("a zero transfer was accepted")
    assert (list(led.store.rows), dict(led.state.balances), led.head_seq) == before
    led.append_many(_pay(700, 800))
    assert led.store.rows == [*before[0], *_rows_of(ledgers[0], 700, 800)]
    assert verify_ledger(led.store).ok


def _rows_of(led: Ledger, start: int, stop: int) -> list:
    led.append_many(_pay(start, stop))
    return led.store.rows[-(stop - start):]
