"""kill -9 during a cross-chain settlement: a writer process settling LEM-to-LEM exchanges is
SIGKILLed between the export half (committed on A) and the import half (on B).  Both chains still
verify alone; the pair check and the cross-chain supply name the half-settled exchange;
`settle_exchange_import` completes it, after which everything verifies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from market.settlement.chains import check_conservation, check_exchange_pairs, half_settled, settle_exchange_import
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.verify import verify_ledger

from .test_chains import chain

WRITER = """
import sys
from market.settlement.chains import settle_exchange, settle_exchange_import
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger
from market.settlement.sqlite_store import SQLiteStore
a = Ledger(SQLiteStore(sys.argv[1]), KeyPair.derive(3, "operator:lem-a"))
b = Ledger(SQLiteStore(sys.argv[2]), KeyPair.derive(3, "operator:lem-b"))
mode, first = sys.argv[3], int(sys.argv[4])
print("ready", flush=True)
i = first
while True:
    xid = f"x-{i}"
    if mode == "pause":  # stop between the two halves, the export committed, until killed
        a.append("exchange", {"exchange_id": xid, "direction": "export", "counter_chain": "lem-b",
                              "account": "lem:a", "qty_wh": 7, "price_uusd_per_kwh": 11, "amount_ntok": 77}, i)
        print("exported", xid, flush=True)
        sys.stdin.readline()
        settle_exchange_import(a.store, b, xid, "lem:b", i)
    else:
        settle_exchange(a, b, xid, "lem:a", "lem:b", 1 + i % 5, 13, i)
    i += 1
"""


def _spawn(paths, mode: str, first: int) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(paths[0]), str(paths[1]), mode, str(first)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    return child


def _kill(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)


def _recover(paths) -> list[str]:
    """What an operator does after the crash: find the half-settled exchanges and complete them."""
    a, b = (SQLiteStore(p) for p in paths)
    importer = Ledger(b, KeyPair.derive(3, "operator:lem-b"))
    done = []
    for xid, exporter, importer_id, export_seq in half_settled([a, b]):
        assert (exporter, importer_id) == ("lem-a", "lem-b")
        settle_exchange_import(a, importer, xid, "lem:b", 10**6, export_seq)
        done.append(xid)
    a.close(), b.close()
    return done


def _all_ok(paths) -> None:
    stores = [SQLiteStore(p, create=False) for p in paths]
    for s in stores:
        assert verify_ledger(s).ok
    assert check_exchange_pairs(stores) == [] and check_conservation(stores)[1] == []
    assert half_settled(stores) == []
    for s in stores:
        s.close()


def test_kill_between_the_two_halves_is_named_and_completed(tmp_path):
    paths = (tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    for p, name in zip(paths, ("lem-a", "lem-b")):
        chain(p, name)[0].store.close()
    child = _spawn(paths, "pause", 1)
    try:
        assert child.stdout.readline().split() == [b"exported", b"x-1"]
        child.stdin.write(b"\n"), child.stdin.flush()  # x-1 completes ...
        assert child.stdout.readline().split() == [b"exported", b"x-2"]  # ... x-2 waits for its import
    finally:
        _kill(child)
    stores = [SQLiteStore(p, create=False) for p in paths]
    for s in stores:
        assert verify_ledger(s).ok  # each chain alone is valid
    assert check_exchange_pairs(stores) == ["exchange 'x-2': export at lem-a entry 2 has no import on 'lem-b'"]
    assert "an exchange is half-settled" in check_conservation(stores)[1][0]
    for s in stores:
        s.close()
    assert _recover(paths) == ["x-2"]
    _all_ok(paths)


def test_kill_at_random_points_of_a_settling_loop_leaves_at_most_one_half_settled(tmp_path):
    paths = (tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    for p, name in zip(paths, ("lem-a", "lem-b")):
        chain(p, name)[0].store.close()
    first = 0
    for wait_s in (0.05, 0.113, 0.217):
        child = _spawn(paths, "loop", first)
        try:
            time.sleep(wait_s)
        finally:
            _kill(child)
        stores = [SQLiteStore(p, create=False) for p in paths]
        for s in stores:
            assert verify_ledger(s).ok
        pending = half_settled(stores)
        assert len(pending) <= 1 and len(check_exchange_pairs(stores)) == len(pending)
        first = stores[0].count() + 1000  # fresh exchange ids for the next round
        for s in stores:
            s.close()
        _recover(paths)
        _all_ok(paths)
