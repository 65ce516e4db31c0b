"""RFC 6962 / RFC 9162 Merkle tree hash, inclusion proofs and their verification.

    MTH({})        = SHA-256()
    MTH({d0})      = SHA-256(0x00 || d0)                       (leaf hash)
    MTH(D[0:n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])),  k = largest power of 2 < n

`root` builds the tree bottom-up, promoting an unpaired last node unchanged to the next level,
which yields exactly the MTH above (the tests check it against the recursive definition).
Leaves here are the 32-byte entry hashes of the ledger.
"""
from __future__ import annotations

import hashlib

from market.settlement.errors import LedgerError

_sha = hashlib.sha256
EMPTY_ROOT = _sha(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right).digest()


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    level = [leaf_hash(d) for d in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def root(leaves: list[bytes]) -> bytes:
    """Merkle tree hash of `leaves` (the raw leaf data, hashed with the 0x00 prefix here)."""
    if not leaves:
        return EMPTY_ROOT
    level = [_sha(b"\x00" + d).digest() for d in leaves]
    while len(level) > 1:
        odd = level.pop() if len(level) % 2 else None
        pairs = iter(level)
        level = [_sha(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
        if odd is not None:
            level.append(odd)
    return level[0]


def inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    """Audit path for leaf `index` (RFC 6962 §2.1.1), ordered from the leaf upwards."""
    n = len(leaves)
    if not 0 <= index < n:
        raise LedgerError(f"inclusion proof: index {index} outside tree of size {n}")
    proof = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify_inclusion(data: bytes, index: int, tree_size: int, proof: list[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2 verification of an inclusion proof."""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(data)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
