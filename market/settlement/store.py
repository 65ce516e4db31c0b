"""Ledger persistence contract and the in-memory fake.

An entry row is (seq, kind, signer, body, hash, sig): `body` is the canonical encoding that was
hashed, `hash` = SHA-256(body), `sig` the signer's Ed25519 signature of `hash`.  A checkpoint row
is (period, first_seq, last_seq, statement, signatures): `statement` is canonical bytes and
`signatures` canonical bytes of [[validator_id, sig_hex], ...].

Writes happen in transactions: `write(entries, checkpoints)` commits all rows or none, which is
what makes a kill during append harmless (SQLite: WAL journal, one transaction per batch).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Protocol, Sequence


class EntryRow(NamedTuple):
    seq: int
    kind: str
    signer: str
    body: bytes
    hash: bytes
    sig: bytes


class CheckpointRow(NamedTuple):
    period: int
    first_seq: int
    last_seq: int
    statement: bytes
    signatures: bytes


class LedgerStore(Protocol):
    def write(self, entries: Sequence[EntryRow], checkpoints: Sequence[CheckpointRow] = ()) -> None:
        """Append rows atomically (all or nothing)."""
        ...

    def head(self) -> EntryRow | None:
        """The last committed entry, or None for an empty ledger."""
        ...

    def count(self) -> int: ...

    def entries(self, first_seq: int = 0, last_seq: int | None = None) -> Iterator[EntryRow]:
        """Committed entries in seq order, inclusive range."""
        ...

    def hashes(self, first_seq: int, last_seq: int) -> list[bytes]: ...

    def checkpoints(self) -> list[CheckpointRow]: ...

    def close(self) -> None: ...


class FakeLedgerStore:
    """In-memory store for tests: same contract, plus `fail_next_write` to simulate a crash."""

    def __init__(self) -> None:
        self.rows: list[EntryRow] = []
        self.cps: list[CheckpointRow] = []
        self.fail_next_write = False

    def write(self, entries: Sequence[EntryRow], checkpoints: Sequence[CheckpointRow] = ()) -> None:
        if self.fail_next_write:
            self.fail_next_write = False
            raise OSError("simulated failure during write")
        expected = len(self.rows)
        for row in entries:
            if row.seq != expected:
                raise ValueError(f"fake store: seq {row.seq} != expected {expected}")
            expected += 1
        self.rows.extend(entries)
        self.cps.extend(checkpoints)

    def head(self) -> EntryRow | None:
        return self.rows[-1] if self.rows else None

    def count(self) -> int:
        return len(self.rows)

    def entries(self, first_seq: int = 0, last_seq: int | None = None) -> Iterator[EntryRow]:
        last = len(self.rows) - 1 if last_seq is None else last_seq
        return iter(self.rows[first_seq:last + 1])

    def hashes(self, first_seq: int, last_seq: int) -> list[bytes]:
        return [r.hash for r in self.rows[first_seq:last_seq + 1]]

    def checkpoints(self) -> list[CheckpointRow]:
        return list(self.cps)

    def close(self) -> None:
        pass

MemoryLedgerStore = FakeLedgerStore  # fully functional; used when no database file is wanted
