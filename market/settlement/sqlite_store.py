"""SQLite persistence of the ledger: WAL journal, one transaction per batch, crash-safe.

A process killed mid-append (even SIGKILL) leaves either the whole batch committed or none of
it: SQLite's write-ahead log makes each transaction atomic.  `synchronous=NORMAL` (default) is
durable across process crashes; pass `synchronous="FULL"` to also survive power loss at the cost
of an fsync per commit.  `seq` is the primary key, so a second writer can never fork the chain.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator, Sequence

from market.settlement.errors import StoreError
from market.settlement.store import CheckpointRow, EntryRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, signer TEXT NOT NULL,
    body BLOB NOT NULL, hash BLOB NOT NULL, sig BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    period INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    statement BLOB NOT NULL, signatures BLOB NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path: str | Path, synchronous: str = "NORMAL", create: bool = True) -> None:
        """Open (and with `create`, initialise) the database; create=False refuses a file that
        is missing or holds no ledger tables, and never modifies it."""
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"{self.path}: no such ledger file")
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            if create:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                self._db.executescript(SCHEMA)
            else:
                names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"entries", "checkpoints"} <= names:
                    raise StoreError(f"{self.path}: not a colorgrid ledger (tables entries/checkpoints missing)")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open ledger database ({exc})") from exc

    def write(self, entries: Sequence[EntryRow], checkpoints: Sequence[CheckpointRow] = ()) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?)", entries)
                db.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?)", checkpoints)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed, nothing committed ({exc})") from exc

    def head(self) -> EntryRow | None:
        row = self._db.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return EntryRow(*row) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def entries(self, first_seq: int = 0, last_seq: int | None = None) -> Iterator[EntryRow]:
        last = 2**62 if last_seq is None else last_seq
        cur = self._db.execute("SELECT * FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last))
        for row in cur:
            yield EntryRow(*row)

    def hashes(self, first_seq: int, last_seq: int) -> list[bytes]:
        cur = self._db.execute("SELECT hash FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq", (first_seq, last_seq))
        return [r[0] for r in cur]

    def checkpoints(self) -> list[CheckpointRow]:
        return [CheckpointRow(*r) for r in self._db.execute("SELECT * FROM checkpoints ORDER BY period")]

    def close(self) -> None:
        self._db.close()
