"""Market results as files, and the settlement ledger through `market.settlement`'s public API.

Tables (`TABLES`) are CSV files of a results folder (`portal.fleet.ResultsFolder`: DIR/NAME, else
the newest DIR/*/NAME): the LEM's `dlmp.csv`, `schedule.csv`, `settlement.csv` once the LEM
writes them, and what `colorgrid te run --out DIR` writes today (`orders.csv`, `trades.csv`,
`intervals.csv`, `balances.csv`). Only these names are served (no path from a client ever
reaches the file system).

The ledger is the folder's `ledger.sqlite` (`colorgrid te run`), opened with
`market.settlement.sqlite_store.SQLiteStore(create=False)` (never modified). `Ledger(store)`
replays the entries once and is kept while the file is unchanged; SQLite connections belong to
the thread that opened them, so every ledger call runs on one worker thread of its own.
"""
from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

from portal.fleet import CsvCache, ResultsFolder, SourceError

TABLES = {
    "dlmp": "dlmp.csv", "schedule": "schedule.csv", "settlement": "settlement.csv",
    "orders": "orders.csv", "trades": "trades.csv", "intervals": "intervals.csv", "balances": "balances.csv",
}
LEDGER_FILE = "ledger.sqlite"


class NotCovered(LookupError):
    """The entry asked for is not (yet) covered by a checkpoint, or does not exist."""


class MarketResults:
    def __init__(self, results: ResultsFolder, csv_cache: CsvCache | None = None) -> None:
        self.results = results
        self.csv = csv_cache or CsvCache()

    def available(self) -> dict[str, dict]:
        out = {}
        for name, file in TABLES.items():
            path = self.results.find(file)
            if path is not None:
                columns, rows = self.csv.read(path)
                try:
                    modified = path.stat().st_mtime_ns // 1_000_000
                except OSError as exc:
                    raise SourceError(f"{path.name}: cannot read ({exc})") from None
                out[name] = {"file": str(path.relative_to(self.results.root)), "columns": columns, "rows": len(rows),
                             "modified_ts_ms": modified}
        return out

    def table(self, name: str) -> tuple[list[str], list[dict]] | None:
        """(columns, rows) of a known table, None when its file does not exist (yet)."""
        path = self.results.find(TABLES[name])
        return None if path is None else self.csv.read(path)


class LedgerReader:
    """Checkpoints and inclusion proofs of the results folder's ledger (read only)."""

    def __init__(self, results: ResultsFolder) -> None:
        self.results = results
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-ledger")
        self._cached: tuple | None = None       # (path, stamp, store, ledger), touched on the worker only
        self._lock = threading.Lock()

    def path(self) -> Path | None:
        return self.results.find(LEDGER_FILE)

    def _ledger(self):
        """(ledger, store) for the current file, on the worker thread; None without a ledger."""
        from market.settlement.errors import SettlementError
        from market.settlement.ledger import Ledger
        from market.settlement.sqlite_store import SQLiteStore

        path = self.path()
        if path is None:
            return None
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cached and self._cached[0] == path and self._cached[1] == stamp:
            return self._cached[3]
        if self._cached:
            self._cached[2].close()
            self._cached = None
        try:
            store = SQLiteStore(path, create=False)
            ledger = Ledger(store)
        except (SettlementError, OSError, ValueError) as exc:
            raise SourceError(f"{path.name}: {exc}") from None
        self._cached = (path, stamp, store, ledger)
        return ledger

    def _run(self, fn):
        import sqlite3

        def call():
            try:
                return fn(self._ledger())
            except sqlite3.Error as exc:
                raise SourceError(f"{LEDGER_FILE}: {exc}") from None

        return self._pool.submit(call).result()

    def info(self) -> dict | None:
        def fn(ledger):
            if ledger is None:
                return None
            cps = ledger.store.checkpoints()
            return {"file": str(self.path().relative_to(self.results.root)), "entries": ledger.store.count(),
                    "checkpoints": len(cps), "threshold_k": ledger.state.threshold_k,
                    "validators": dict(sorted(ledger.state.validators.items()))}
        return self._run(fn)

    def checkpoints(self) -> list[dict] | None:
        from market.settlement import canonical

        def fn(ledger):
            if ledger is None:
                return None
            return [{"period": cp.period, "first_seq": cp.first_seq, "last_seq": cp.last_seq,
                     "statement": canonical.decode(cp.statement),
                     "signatures": [{"validator": v, "signature": s} for v, s in canonical.decode(cp.signatures)]}
                    for cp in ledger.store.checkpoints()]
        return self._run(fn)

    def proof(self, seq: int) -> dict | None:
        """The RFC 6962 inclusion proof of entry `seq` as `colorgrid ledger prove` prints it."""
        from market.settlement import canonical
        from market.settlement.errors import LedgerError
        from market.settlement.ledger import verify_proof

        def fn(ledger):
            if ledger is None:
                return None
            try:
                proof = ledger.prove(seq)
            except LedgerError as exc:
                raise NotCovered(str(exc)) from None
            ok = verify_proof(proof, dict(ledger.state.validators), ledger.state.threshold_k)
            return {"seq": proof.seq, "entry_hash": proof.entry_hash.hex(), "leaf_index": proof.index,
                    "tree_size": proof.tree_size, "audit_path": [h.hex() for h in proof.path],
                    "statement": canonical.decode(proof.statement),
                    "signatures": [{"validator": v, "signature": s} for v, s in proof.signatures],
                    "validators": dict(sorted(ledger.state.validators.items())),
                    "threshold_k": ledger.state.threshold_k, "verified": ok}
        return self._run(fn)

    def close(self) -> None:
        def fn():
            if self._cached:
                self._cached[2].close()
                self._cached = None
        self._pool.submit(fn).result()
        self._pool.shutdown()
