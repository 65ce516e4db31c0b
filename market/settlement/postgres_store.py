"""PostgreSQL persistence of the ledger (option; needs `psycopg` 3, e.g. `pip install psycopg[binary]`).

Same contract as `SQLiteStore`: one transaction per `write` (all rows or none; entries go in
by binary COPY), `seq` is the
primary key so two writers can never fork the chain.  Tables are `<namespace>_entries` and
`<namespace>_checkpoints`, so several ledgers can share one database.
"""
from __future__ import annotations

import re
from typing import Iterator, Sequence

from market.settlement.errors import StoreError
from market.settlement.store import CheckpointRow, EntryRow


class PostgresStore:
    def __init__(self, dsn: str, namespace: str = "te_ledger", create: bool = True) -> None:
        try:
            import psycopg
        except ImportError as exc:  # the option's dependency, named
            raise StoreError("PostgreSQL store needs psycopg 3: pip install 'psycopg[binary]'") from exc
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", namespace):
            raise StoreError(f"namespace {namespace!r}: use lower-case letters, digits and _")
        self._ns = namespace
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(dsn, autocommit=True)
            if create:
                with self._db.transaction():
                    self._db.execute(f"CREATE TABLE IF NOT EXISTS {namespace}_entries (seq BIGINT PRIMARY KEY, "
                                     "kind TEXT NOT NULL, signer TEXT NOT NULL, body BYTEA NOT NULL, "
                                     "hash BYTEA NOT NULL, sig BYTEA NOT NULL)")
                    self._db.execute(f"CREATE TABLE IF NOT EXISTS {namespace}_checkpoints (period BIGINT PRIMARY KEY, "
                                     "first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, statement BYTEA NOT NULL, "
                                     "signatures BYTEA NOT NULL)")
            elif (self._db.execute("SELECT to_regclass(%s)", (f"{namespace}_entries",)).fetchone() or [None])[0] is None:
                raise StoreError(f"no ledger tables {namespace}_entries/_checkpoints in the database")
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: cannot open ledger ({exc})") from exc

    def write(self, entries: Sequence[EntryRow], checkpoints: Sequence[CheckpointRow] = ()) -> None:
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                if entries:  # COPY (binary): one round trip per batch instead of one per row
                    with cur.copy(f"COPY {self._ns}_entries (seq, kind, signer, body, hash, sig) "
                                  "FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(["int8", "text", "text", "bytea", "bytea", "bytea"])
                        for row in entries:
                            copy.write_row(row)
                if checkpoints:
                    cur.executemany(f"INSERT INTO {self._ns}_checkpoints VALUES (%s,%s,%s,%s,%s)", list(checkpoints))
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: write failed, nothing committed ({exc})") from exc

    @staticmethod
    def _entry(row) -> EntryRow:
        return EntryRow(row[0], row[1], row[2], bytes(row[3]), bytes(row[4]), bytes(row[5]))

    def head(self) -> EntryRow | None:
        row = self._db.execute(f"SELECT * FROM {self._ns}_entries ORDER BY seq DESC LIMIT 1").fetchone()
        return self._entry(row) if row is not None else None

    def count(self) -> int:
        row = self._db.execute(f"SELECT COUNT(*) FROM {self._ns}_entries").fetchone()
        return int(row[0]) if row is not None else 0

    def entries(self, first_seq: int = 0, last_seq: int | None = None) -> Iterator[EntryRow]:
        last = 2**62 if last_seq is None else last_seq
        with self._db.cursor() as cur:
            cur.execute(f"SELECT * FROM {self._ns}_entries WHERE seq BETWEEN %s AND %s ORDER BY seq", (first_seq, last))
            while True:
                rows = cur.fetchmany(5000)
                if not rows:
                    return
                for row in rows:
                    yield self._entry(row)

    def hashes(self, first_seq: int, last_seq: int) -> list[bytes]:
        cur = self._db.execute(f"SELECT hash FROM {self._ns}_entries WHERE seq BETWEEN %s AND %s ORDER BY seq",
                               (first_seq, last_seq))
        return [bytes(r[0]) for r in cur.fetchall()]

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._db.execute(f"SELECT * FROM {self._ns}_checkpoints ORDER BY period").fetchall()
        return [CheckpointRow(r[0], r[1], r[2], bytes(r[3]), bytes(r[4])) for r in rows]

    def drop(self) -> None:
        """Delete this namespace's tables (tests, teardown)."""
        self._db.execute(f"DROP TABLE IF EXISTS {self._ns}_entries, {self._ns}_checkpoints")

    def close(self) -> None:
        self._db.close()
