"""Crash safety: a writer process SIGKILLed mid-append never leaves a corrupt or partial chain."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.verify import verify_ledger

from .conftest import SEED, new_ledger

BATCH = 200
WRITER = f"""
import sys
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger
from market.settlement.sqlite_store import SQLiteStore
ledger = Ledger(SQLiteStore(sys.argv[1]), KeyPair.derive({SEED}, "operator"))
print("ready", flush=True)
i = 0
while True:
    with ledger.batch():
        for _ in range({BATCH}):
            ledger.transfer("a", "b", 1 + i % 7, "pay", i)
            i += 1
"""


def _wait_for_growth(path: Path, entries: int, timeout_s: float = 20.0) -> None:
    """Poll (read-only) until the writer has committed at least `entries` entries."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        db = sqlite3.connect(path)
        try:
            n = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        finally:
            db.close()
        if n >= entries:
            return
        time.sleep(0.01)
    raise AssertionError(f"writer did not reach {entries} entries in {timeout_s} s")


def test_sigkill_during_batched_appends_leaves_a_valid_chain(tmp_path):
    path = tmp_path / "ledger.db"
    new_ledger(SQLiteStore(path))[0].store.close()  # genesis only
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    previous = 1
    for round_, wait_s in enumerate((0.0, 0.013, 0.007)):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == b"ready"
            _wait_for_growth(path, previous + 2 * BATCH)
            time.sleep(wait_s)  # killed while it is appending (at different points of a batch)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        store = SQLiteStore(path)
        rep = verify_ledger(store)
        assert rep.ok, rep.describe()
        n = store.count()
        assert n > previous, f"round {round_}: the writer appended nothing"
        assert (n - 1) % BATCH == 0, "a batch was committed partially"
        previous = n
        # the chain continues where the killed writer stopped
        ledger = Ledger(store, KeyPair.derive(SEED, "operator"))
        assert ledger.head_seq == n - 1
        store.close()
    # the last reopened ledger can still append and verify
    ledger = Ledger(SQLiteStore(path), KeyPair.derive(SEED, "operator"))
    ledger.transfer("b", "a", 3, "pay", 0)
    assert verify_ledger(ledger.store).ok
