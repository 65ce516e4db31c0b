"""Append-only settlement ledger: hash chain + Ed25519 signatures + k-of-n Merkle checkpoints.

    body_i = canonical({seq, prev, kind, signer, ts_ms, payload})     prev = hash_{i-1} (hex)
    hash_i = SHA-256(body_i)          sig_i = Ed25519_sign(signer, hash_i)

Per period, a checkpoint statement covers the entries appended since the last one:

    statement = canonical({ledger_id, period, first_seq, last_seq, tree_size,
                           root = RFC 6962 MTH(hash_first .. hash_last), head = hash_last,
                           prev_checkpoint = SHA-256(previous statement) or 32 zero bytes})

and is co-signed by validators (witnesses that recompute the root themselves); it is stored
only with >= k valid signatures.  Appends go through `LedgerState` rules first; `batch()` groups
appends into one store transaction (all or nothing) and signs its entries together at commit
(`sign_threads` > 1 spreads the Ed25519 signatures over threads; libsodium releases the GIL);
`append_many` takes a batch of entries in one call.  Entry bodies are built from a template
(`canonical.encode_entry`, the same bytes as the generic encoder).  Time in hashed data is what the caller passes (`ts_ms`), never the wall clock.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, Sequence

from market.settlement import canonical, merkle
from market.settlement.errors import InsufficientSignatures, LedgerError
from market.settlement.keys import KeyPair, is_valid
from market.settlement.ledger_state import LedgerState, reading_message
from market.settlement.store import CheckpointRow, EntryRow, LedgerStore

ZERO_HASH = b"\x00" * 32
_sha256 = hashlib.sha256


def entry_body(seq: int, prev: bytes, kind: str, signer: str, ts_ms: int, payload: dict) -> bytes:
    return canonical.encode_entry(seq, prev.hex(), kind, signer, ts_ms, payload)


class Validator(Protocol):
    validator_id: str

    def cosign(self, statement: bytes, store: LedgerStore) -> bytes:
        """Check the statement against the validator's view of the store; return a signature."""
        ...


class WitnessValidator:
    """Signs a checkpoint only after recomputing its Merkle root and head from the stored hashes."""

    def __init__(self, key: KeyPair) -> None:
        self.key = key
        self.validator_id = key.key_id

    def cosign(self, statement: bytes, store: LedgerStore) -> bytes:
        st = canonical.decode(statement)
        hashes = store.hashes(st["first_seq"], st["last_seq"])
        if len(hashes) != st["tree_size"] or merkle.root(hashes).hex() != st["root"] or hashes[-1].hex() != st["head"]:
            raise LedgerError(f"validator {self.validator_id}: checkpoint {st['period']} does not match the ledger")
        return self.key.sign(statement)


@dataclass
class InclusionProof:
    seq: int
    entry_hash: bytes
    index: int
    tree_size: int
    path: list[bytes]
    statement: bytes
    signatures: list[tuple[str, str]]


class Ledger:
    """A ledger over a store.  `operator` (the key that signs entries) is needed to append."""

    def __init__(self, store: LedgerStore, operator: KeyPair | None = None, sign_threads: int = 1) -> None:
        self.store = store
        self.operator = operator
        self.sign_threads = sign_threads
        self.state = LedgerState()
        self._pending: list[tuple] | None = None  # (seq, kind, signer, body, hash), signed at commit
        self._broken = False
        self._replay()

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, store: LedgerStore, operator: KeyPair, validators: list[tuple[str, str]],
               threshold_k: int, ledger_id: str, ts_ms: int = 0, credit_limit_ntok: int = 0,
               burn_reasons: tuple[str, ...] = ("grid_purchase", "penalty"),
               periodic_burn: dict | None = None) -> "Ledger":
        """`periodic_burn` = {"period_ms", "rate_ppm"[, "start_ts_ms" (default ts_ms), "exempt": [...]]}:
        rate_ppm of every positive balance is burned once per period (`burn_periodic`)."""
        if store.count():
            raise LedgerError("create: the store already holds a ledger")
        ledger = cls(store, operator)
        genesis = {
            "ledger_id": ledger_id, "operator": {"key_id": operator.key_id, "public_hex": operator.public_hex},
            "validators": [[vid, pub] for vid, pub in validators], "threshold_k": threshold_k,
            "credit_limit_ntok": credit_limit_ntok, "burn_reasons": list(burn_reasons)}
        if periodic_burn is not None:  # absent otherwise: genesis bytes of ledgers without it are unchanged
            genesis["periodic_burn"] = {"start_ts_ms": ts_ms, "exempt": [], **periodic_burn}
            genesis["periodic_burn"]["exempt"] = sorted(genesis["periodic_burn"]["exempt"])
        ledger.append("genesis", genesis, ts_ms)
        return ledger

    def _replay(self) -> None:
        """Rebuild the state from committed entries (trusted local store: no signature checks)."""
        self.state = LedgerState()
        self._head_seq, self._head_hash = -1, ZERO_HASH
        cps = self.store.checkpoints()
        self._last_cp = cps[-1] if cps else None
        covered = self._last_cp.last_seq if self._last_cp else -1
        self._uncovered: list[bytes] = []  # hashes of committed entries after the last checkpoint
        for row in self.store.entries():
            body = canonical.decode(row.body)
            self.state.apply(row.seq, row.kind, row.signer, body["payload"], check_meter_sig=False, ts_ms=body["ts_ms"])
            self._head_seq, self._head_hash = row.seq, row.hash
            if row.seq > covered:
                self._uncovered.append(row.hash)

    # -- appends ----------------------------------------------------------------------------
    def append(self, kind: str, payload: dict, ts_ms: int) -> int:
        """Check, sign and append one entry; returns its seq (committed now unless in a batch)."""
        if self.operator is None:
            raise LedgerError("append: ledger opened read-only (no operator key)")
        seq = self._head_seq + 1
        signer = self.operator.key_id
        body = canonical.encode_entry(seq, self._head_hash.hex(), kind, signer, ts_ms, payload)
        self.state.apply(seq, kind, signer, payload, ts_ms=ts_ms)  # raises before anything changes
        digest = _sha256(body).digest()
        self._head_seq, self._head_hash = seq, digest
        if self._pending is not None:
            self._pending.append((seq, kind, signer, body, digest))
        else:
            self._commit([EntryRow(seq, kind, signer, body, digest, self.operator.sign(digest))])
        return seq

    def append_many(self, entries: Iterable[tuple[str, dict, int]]) -> list[int]:
        """Append (kind, payload, ts_ms) entries in one batch (one transaction, signed together);
        all or nothing.  The same rules and bytes as `append` one by one, without its per-call cost."""
        if self.operator is None:
            raise LedgerError("append: ledger opened read-only (no operator key)")
        with self.batch():
            pending, apply, encode = self._pending, self.state.apply, canonical.encode_entry
            signer = self.operator.key_id
            seq, head = self._head_seq, self._head_hash
            first = seq + 1
            try:
                for kind, payload, ts_ms in entries:
                    body = encode(seq + 1, head.hex(), kind, signer, ts_ms, payload)
                    apply(seq + 1, kind, signer, payload, True, ts_ms)
                    seq, head = seq + 1, _sha256(body).digest()
                    pending.append((seq, kind, signer, body, head))
            except BaseException:
                self._broken = True  # an enclosing batch must not commit the entries before the failure
                raise
            self._head_seq, self._head_hash = seq, head
            return list(range(first, seq + 1))

    def _commit(self, rows: list[EntryRow], checkpoints: Sequence[CheckpointRow] = ()) -> None:
        try:
            self.store.write(rows, checkpoints)
        except BaseException:
            self._replay()  # the store holds all or nothing; rebuild the in-memory head from it
            raise
        self._uncovered.extend(row.hash for row in rows)

    def _commit_pending(self, pending: list[tuple]) -> None:
        if not pending:
            return
        sigs = self.operator.sign_many([p[4] for p in pending], self.sign_threads)
        self._commit([EntryRow(seq, kind, signer, body, digest, sig)
                      for (seq, kind, signer, body, digest), sig in zip(pending, sigs)])

    @contextmanager
    def batch(self) -> Iterator["Ledger"]:
        """Group appends into one atomic store transaction; an exception discards the whole batch."""
        if self._pending is not None:
            yield self
            return
        self._pending, self._broken = [], False
        try:
            yield self
            pending, self._pending = self._pending, None
            if self._broken:
                raise LedgerError("batch discarded: an append_many inside it failed")
            self._commit_pending(pending)
        except BaseException:
            self._pending = None
            self._replay()
            raise

    # -- typed helpers ----------------------------------------------------------------------
    def register_key(self, key_id: str, role: str, public_hex: str, owner: str, ts_ms: int) -> int:
        return self.append("register_key", {"key_id": key_id, "role": role, "public_hex": public_hex,
                                            "owner": owner}, ts_ms)

    def record_meter_reading(self, reading: dict, meter_sig: bytes) -> int:
        """Accept a reading only if signed by the registered meter of its participant."""
        payload = dict(reading, meter_sig=meter_sig.hex())
        return self.append("meter_reading", payload, reading["ts_ms"])

    def mint_delivery(self, account: str, reading_seq: int, qty_wh: int, price_uusd_per_kwh: int, ts_ms: int, ref: str = "") -> int:
        return self.append("mint", {"account": account, "amount_ntok": qty_wh * price_uusd_per_kwh, "reason": "delivery",
                                    "reading_seq": reading_seq, "qty_wh": qty_wh,
                                    "price_uusd_per_kwh": price_uusd_per_kwh, "ref": ref}, ts_ms)

    def transfer(self, src: str, dst: str, amount_ntok: int, reason: str, ts_ms: int, ref: str = "", **delivery) -> int:
        payload = {"from": src, "to": dst, "amount_ntok": amount_ntok, "reason": reason, "ref": ref}
        payload.update(delivery)
        return self.append("transfer", payload, ts_ms)

    def burn(self, account: str, amount_ntok: int, reason: str, ts_ms: int, ref: str = "") -> int:
        return self.append("burn", {"account": account, "amount_ntok": amount_ntok, "reason": reason, "ref": ref}, ts_ms)

    def burn_periodic(self, ts_ms: int) -> list[int]:
        """Book every periodic burn due at `ts_ms` (periods that ended at or before it); their seqs."""
        seqs = []
        while self.state.burn_due_ms is not None and ts_ms >= self.state.burn_due_ms:
            seqs.append(self.append("periodic_burn", {"period": self.state.next_burn_period,
                                                      "burns": self.state.periodic_burns()}, ts_ms))
        return seqs

    # -- checkpoints and proofs -------------------------------------------------------------
    def checkpoint(self, period: int, validators: list[Validator]) -> CheckpointRow:
        """Co-sign the entries since the last checkpoint; stored only with >= k valid signatures."""
        if self._pending:
            raise LedgerError("checkpoint: commit the open batch first")
        first = self._last_cp.last_seq + 1 if self._last_cp else 0
        last = self._head_seq
        if last < first:
            raise LedgerError(f"checkpoint {period}: no entries since the last checkpoint")
        if self._last_cp and period <= self._last_cp.period:
            raise LedgerError(f"checkpoint {period}: period must exceed {self._last_cp.period}")
        hashes = self._uncovered  # the committed hashes since the last checkpoint, kept since append
        if len(hashes) != last - first + 1:  # cannot happen unless the store was changed under us
            hashes = self.store.hashes(first, last)
        prev = hashlib.sha256(self._last_cp.statement).digest() if self._last_cp else ZERO_HASH
        statement = canonical.encode({
            "ledger_id": self.state.ledger_id, "period": period, "first_seq": first, "last_seq": last,
            "tree_size": len(hashes), "root": merkle.root(hashes).hex(), "head": hashes[-1].hex(),
            "prev_checkpoint": prev.hex()})
        sigs = []
        for v in validators:
            sig = v.cosign(statement, self.store)
            public_hex = self.state.validators.get(v.validator_id)
            if public_hex is not None and is_valid(public_hex, sig, statement):
                sigs.append([v.validator_id, sig.hex()])
        if len({s[0] for s in sigs}) < self.state.threshold_k:
            raise InsufficientSignatures(f"checkpoint {period}: {len(sigs)} valid signatures, need {self.state.threshold_k}")
        row = CheckpointRow(period, first, last, statement, canonical.encode(sorted(sigs)))
        self._commit([], [row])
        self._last_cp = row
        self._uncovered = []
        return row

    def prove(self, seq: int) -> InclusionProof:
        """Inclusion proof of entry `seq` in the checkpoint that covers it."""
        for cp in self.store.checkpoints():
            if cp.first_seq <= seq <= cp.last_seq:
                hashes = self.store.hashes(cp.first_seq, cp.last_seq)
                index = seq - cp.first_seq
                return InclusionProof(seq, hashes[index], index, len(hashes), merkle.inclusion_proof(index, hashes),
                                      cp.statement, [tuple(s) for s in canonical.decode(cp.signatures)])
        raise LedgerError(f"prove: entry {seq} is not covered by a checkpoint yet")

    @property
    def head_seq(self) -> int:
        return self._head_seq


def verify_proof(proof: InclusionProof, validators: dict[str, str], threshold_k: int) -> bool:
    """Check a proof offline: >= k validator signatures on the statement, and the audit path."""
    good = {vid for vid, sig in proof.signatures
            if vid in validators and is_valid(validators[vid], bytes.fromhex(sig), proof.statement)}
    if len(good) < threshold_k:
        return False
    st = canonical.decode(proof.statement)
    if st["tree_size"] != proof.tree_size or not st["first_seq"] + proof.index == proof.seq:
        return False
    return merkle.verify_inclusion(proof.entry_hash, proof.index, proof.tree_size, proof.path, bytes.fromhex(st["root"]))


def sign_reading(reading: dict, meter_key: KeyPair) -> bytes:
    """What a meter does: sign the canonical reading (meter_id, participant_id, interval, export_wh, import_wh, ts_ms)."""
    return meter_key.sign(reading_message(reading))
