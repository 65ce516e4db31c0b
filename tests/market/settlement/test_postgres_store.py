"""PostgreSQL ledger store (the option): same chain, tamper detection and atomic batches.

Needs a PostgreSQL server (127.0.0.1:5432, trust auth, database `test`, or $COLORGRID_TEST_PG_DSN)
and psycopg 3; a missing one fails the test rather than skipping it.
"""
from __future__ import annotations

import os

import pytest

from market.settlement.errors import LedgerError
from market.settlement.ledger import Ledger
from market.settlement.postgres_store import PostgresStore
from market.settlement.verify import verify_ledger

from .conftest import add_meter, keys, new_ledger

DSN = os.environ.get("COLORGRID_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture
def store():
    s = PostgresStore(DSN, namespace=f"te_test_{os.getpid()}")
    s.drop()
    s = PostgresStore(DSN, namespace=f"te_test_{os.getpid()}")
    yield s
    s.drop()
    s.close()


def test_postgres_ledger_roundtrip_batches_checkpoints_and_tamper(store):
    ledger, validators = new_ledger(store)
    r = add_meter(ledger, "p1", export_wh=5_000)
    with ledger.batch():
        for i in range(200):
            ledger.transfer("p2", "p1", 10 * 7, "trade", i, reading_seq=r, qty_wh=10, price_uusd_per_kwh=7)
    ledger.checkpoint(1, validators)
    with pytest.raises(LedgerError):
        with ledger.batch():  # 2000 + 10 + 4990 Wh > 5000 Wh exported: nothing of this batch lands
            ledger.transfer("p2", "p1", 70, "trade", 0, reading_seq=r, qty_wh=10, price_uusd_per_kwh=7)
            ledger.transfer("p2", "p1", 4_990 * 7, "trade", 0, reading_seq=r, qty_wh=4_990, price_uusd_per_kwh=7)
    assert store.count() == ledger.head_seq + 1 == 203  # genesis, meter key, reading, 200 transfers
    reopened = Ledger(PostgresStore(DSN, namespace=store._ns, create=False), keys()[0])
    assert reopened.head_seq == 202 and reopened.state.balances == ledger.state.balances
    rep = verify_ledger(store)
    assert rep.ok and rep.checkpoints_checked == 1 and rep.balances_ntok["p1"] == 200 * 70
    store._db.execute(f"UPDATE {store._ns}_entries SET body = convert_to(replace(convert_from(body, 'UTF8'), "
                      f"'\"amount_ntok\":70', '\"amount_ntok\":71'), 'UTF8') WHERE seq = 50")
    rep = verify_ledger(store)
    assert not rep.ok and rep.bad_seq == 50
