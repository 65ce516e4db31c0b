"""Full verification of a stored ledger, naming the first bad entry or checkpoint.

For every entry in seq order: seq has no gap; SHA-256(body) equals the stored hash; the body's
`prev` equals the previous entry's hash; the operator's Ed25519 signature of the hash verifies;
the entry obeys the ledger rules replayed from genesis (`LedgerState`: registered keys, meter
signatures, delivery-backed mints, credit limit, burn policy).  Then every checkpoint: it starts
where the previous one ended, its statement matches the recomputed RFC 6962 root, head hash and
previous-checkpoint hash, and it carries >= k valid signatures of distinct genesis validators.
Finally tokens are conserved: sum(balances) == minted - burned.

What this cannot see: entries appended after the last checkpoint can be dropped from the end
without a trace unless a validator (or anyone) kept the checkpoint or a later head hash; and a
party holding the operator key can rewrite un-checkpointed history (see docs/te.md).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field

from market.settlement import canonical, merkle
from market.settlement.errors import KeyError_, LedgerError, StoreError
from market.settlement.keys import is_valid, valid_many
from market.settlement.ledger_state import LedgerState, reading_message
from market.settlement.store import LedgerStore

ZERO_HASH = b"\x00" * 32
_decode = json.JSONDecoder().decode


@dataclass
class VerificationReport:
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    bad_seq: int | None = None
    bad_checkpoint: int | None = None
    reason: str = ""
    uncovered_entries: int = 0
    balances_ntok: dict = field(default_factory=dict)
    minted_ntok: int = 0
    burned_ntok: int = 0

    def describe(self) -> str:
        if self.ok:
            return (f"ledger OK: {self.entries_checked} entries, {self.checkpoints_checked} checkpoints, "
                    f"{self.uncovered_entries} entries after the last checkpoint")
        where = f"entry {self.bad_seq}" if self.bad_seq is not None else f"checkpoint {self.bad_checkpoint}"
        return f"ledger INVALID at {where}: {self.reason}"


def _entry_problem(row, expected_seq: int, prev: bytes, state: LedgerState, trusted_operator_hex: str | None,
                   sig_tasks: list) -> str:
    if row.seq != expected_seq:
        return f"entry {expected_seq} missing (next stored seq is {row.seq})"
    if hashlib.sha256(row.body).digest() != row.hash:
        return "body does not match its stored hash (entry modified)"
    try:  # canonical bodies are ASCII: decode the text directly (json.loads would detect the encoding)
        body = _decode(row.body.decode("ascii")) if type(row.body) is bytes else canonical.decode(row.body)
    except UnicodeDecodeError:
        try:
            body = canonical.decode(row.body)
        except ValueError:
            return "body is not canonical JSON"
    except ValueError:
        return "body is not canonical JSON"
    if body.get("seq") != row.seq or body.get("kind") != row.kind or body.get("signer") != row.signer:
        return "body seq/kind/signer differ from the stored row"
    if body.get("prev") != prev.hex():
        return "chain broken: prev does not equal the previous entry's hash"
    payload = body.get("payload")
    try:
        if row.seq == 0:
            public_hex = (payload.get("operator") or {}).get("public_hex", "")
            if trusted_operator_hex is not None and public_hex != trusted_operator_hex:
                return "genesis operator key differs from the trusted key"
        else:
            public_hex = state.registry.public_hex(str(row.signer), role="operator")
    except (KeyError_, AttributeError) as exc:
        return f"signer not registered as operator ({exc})"
    sig_tasks.append((row.seq, public_hex, row.sig, row.hash, f"signature of {row.signer!r} does not verify"))
    try:
        if row.kind == "meter_reading" and isinstance(payload, dict):
            _meter_task(row.seq, payload, state, sig_tasks)
        elif row.kind == "chain_checkpoint" and isinstance(payload, dict):
            _chain_checkpoint_tasks(row.seq, payload, state, sig_tasks)
        state.apply(row.seq, row.kind, row.signer, payload, check_meter_sig=False, ts_ms=body.get("ts_ms"))
    except (LedgerError, KeyError_, TypeError, ValueError) as exc:
        return f"rule violated: {exc}"
    return ""


def _meter_task(seq: int, payload: dict, state: LedgerState, sig_tasks: list) -> None:
    """Queue the meter's signature of a reading (the rule checks run in `state.apply`)."""
    meter = payload.get("meter_id")
    try:
        public_hex = state.registry.public_hex(str(meter), role="meter")
        sig = bytes.fromhex(payload.get("meter_sig") or "")
        message = reading_message(payload)
    except (KeyError_, KeyError, ValueError, TypeError, LedgerError) as exc:
        raise LedgerError(f"meter reading refused: {exc}") from None
    sig_tasks.append((seq, public_hex, sig, message, f"meter {meter!r} signature does not verify"))


def _chain_checkpoint_tasks(seq: int, payload: dict, state: LedgerState, sig_tasks: list) -> None:
    """Queue the sidechain validators' signatures of a main-chain record (rules run in `state.apply`)."""
    found = state.chain_checkpoint_problem(payload)
    if isinstance(found, str):
        raise LedgerError(f"chain checkpoint refused: {found}")
    chain, _, sigs = found
    message = payload["statement"].encode("ascii")
    for vid, sig in sigs:
        try:
            raw = bytes.fromhex(sig)
        except (TypeError, ValueError):
            raise LedgerError(f"chain checkpoint refused: signature of {vid!r} is not hex") from None
        sig_tasks.append((seq, chain["validators"][vid], raw, message,
                          f"validator {vid!r} signature of chain {payload['ledger_id']!r} checkpoint does not verify"))


def _bad_signatures(tasks: list) -> list[tuple[int, str]]:
    oks = valid_many([(public_hex, sig, message) for _, public_hex, sig, message, _ in tasks])
    return [(task[0], task[4]) for task, ok in zip(tasks, oks) if not ok]


CHUNK = 4096  # signatures per task sent to a worker process


class _SignatureChecker:
    """Checks queued signatures while the structural pass goes on: inline with one worker; with
    more, chunks go to a fork pool as soon as they fill, so the workers overlap the replay."""

    def __init__(self, workers: int) -> None:
        self.tasks: list = []
        self.bad: list[tuple[int, str]] = []
        self._pool = None
        self._results: list = []
        if workers > 1:
            import multiprocessing

            self._pool = multiprocessing.get_context("fork").Pool(workers)

    def flush(self, force: bool = False) -> None:
        if not self.tasks or (not force and len(self.tasks) < CHUNK):
            return
        chunk, self.tasks = self.tasks, []
        if self._pool is None:
            self.bad.extend(_bad_signatures(chunk))
        else:
            self._results.append(self._pool.apply_async(_bad_signatures, (chunk,)))

    def first_bad(self, up_to: int | None) -> tuple[int, str] | None:
        """The lowest failing seq (only seqs <= `up_to` count when the replay stopped there)."""
        self.flush(force=True)
        try:
            for result in self._results:
                self.bad.extend(result.get())
        finally:
            self.close()
        bad = [b for b in self.bad if up_to is None or b[0] <= up_to]
        return min(bad) if bad else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


def first_bad_signature(tasks: list, workers: int = 1) -> tuple[int, str] | None:
    """Verify all queued signatures (in `workers` processes when > 1); the lowest failing seq."""
    checker = _SignatureChecker(workers if len(tasks) >= 2000 else 1)
    for start in range(0, len(tasks), CHUNK):
        checker.tasks = tasks[start:start + CHUNK]
        checker.flush(force=True)
    return checker.first_bad(None)


def _checkpoint_problem(cp, expected_first: int, prev_statement: bytes | None, prev_period: int,
                        hashes: list[bytes], state: LedgerState) -> str:
    if cp.first_seq != expected_first or cp.last_seq < cp.first_seq:
        return f"covers {cp.first_seq}..{cp.last_seq}, expected to start at {expected_first}"
    if cp.last_seq >= len(hashes):
        return f"covers entries up to {cp.last_seq} but the ledger ends at {len(hashes) - 1} (entries removed)"
    if cp.period <= prev_period:
        return "period does not increase"
    leaves = hashes[cp.first_seq:cp.last_seq + 1]
    prev = hashlib.sha256(prev_statement).digest() if prev_statement is not None else ZERO_HASH
    expected = canonical.encode({
        "ledger_id": state.ledger_id, "period": cp.period, "first_seq": cp.first_seq, "last_seq": cp.last_seq,
        "tree_size": len(leaves), "root": merkle.root(leaves).hex(), "head": leaves[-1].hex(),
        "prev_checkpoint": prev.hex()})
    if expected != cp.statement:
        return "statement does not match the recomputed Merkle root / head / previous checkpoint"
    try:
        sigs = canonical.decode(cp.signatures)
    except ValueError:
        return "signatures are not canonical JSON"
    good = {vid for vid, sig in sigs if vid in state.validators
            and is_valid(state.validators[vid], bytes.fromhex(sig), cp.statement)}
    if len(good) < state.threshold_k:
        return f"{len(good)} valid validator signatures, need {state.threshold_k}"
    return ""


# what a damaged store raises while it is read (SQLiteStore's cursors surface sqlite3's own error)
STORAGE_ERRORS = (StoreError, sqlite3.DatabaseError)


def _corrupt(what: str, exc: Exception, readable: int) -> str:
    last = f"the last verifiable entry is {readable - 1}" if readable else "no entry could be verified"
    return f"ledger file corrupt: {what} ({exc}); {last}"


def verify_ledger(store: LedgerStore, trusted_operator_hex: str | None = None, workers: int = 1) -> VerificationReport:
    """Verify everything; signatures are checked after the structural pass (in parallel if
    `workers` > 1) and the lowest failing seq of either pass is reported."""
    state = LedgerState()
    prev = ZERO_HASH
    hashes: list[bytes] = []
    checker = _SignatureChecker(workers)
    tasks = checker.tasks
    structural = None
    try:
        for row in store.entries():
            problem = _entry_problem(row, len(hashes), prev, state, trusted_operator_hex, tasks)
            if problem:
                structural = (min(row.seq, len(hashes)), problem)
                break
            hashes.append(row.hash)
            prev = row.hash
            if len(tasks) >= CHUNK:
                checker.flush()
                tasks = checker.tasks
    except STORAGE_ERRORS as exc:  # a damaged file: report how far the ledger verifies
        structural = (len(hashes), _corrupt(f"entry {len(hashes)} and later cannot be read", exc, len(hashes)))
    except BaseException:
        checker.close()
        raise
    bad_sig = checker.first_bad(structural[0] if structural else None)
    first = bad_sig or structural
    if first is not None:
        return VerificationReport(False, first[0], 0, bad_seq=first[0], reason=first[1])
    if not hashes:
        return VerificationReport(False, 0, 0, reason="empty ledger (no genesis)")
    prev_statement, prev_period, covered = None, -1, 0
    try:
        cps = store.checkpoints()
    except STORAGE_ERRORS as exc:
        return VerificationReport(False, len(hashes), 0, bad_checkpoint=0,
                                  reason=_corrupt("the checkpoints cannot be read", exc, len(hashes)))
    for cp in cps:
        problem = _checkpoint_problem(cp, covered, prev_statement, prev_period, hashes, state)
        if problem:
            return VerificationReport(False, len(hashes), cps.index(cp), bad_checkpoint=cp.period, reason=problem)
        prev_statement, prev_period, covered = cp.statement, cp.period, cp.last_seq + 1
    gap = state.conservation_gap_ntok()
    if gap:
        return VerificationReport(False, len(hashes), len(cps), reason=f"tokens not conserved (gap {gap} ntok)")
    return VerificationReport(True, len(hashes), len(cps), uncovered_entries=len(hashes) - covered,
                              balances_ntok=dict(sorted(state.balances.items())),
                              minted_ntok=state.minted_ntok, burned_ntok=state.burned_ntok)
