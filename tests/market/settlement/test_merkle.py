"""RFC 6962 Merkle tree: bottom-up root equals the recursive definition; proofs verify and fail."""
from __future__ import annotations

import hashlib

from market.settlement import merkle


def mth(leaves):
    """RFC 6962 §2.1 recursive definition, written independently of market.settlement.merkle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def test_root_matches_recursive_definition_and_known_vector():
    for n in range(0, 34):
        leaves = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
        assert merkle.root(leaves) == mth(leaves)
    # RFC 6962 empty tree hash
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_inclusion_proofs_verify_and_reject_wrong_data_index_root():
    for n in (1, 2, 3, 5, 7, 8, 13, 32, 33):
        leaves = [bytes([i]) * 32 for i in range(n)]
        root = merkle.root(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, root)
            assert not merkle.verify_inclusion(b"\xff" * 32, i, n, proof, root)
            assert not merkle.verify_inclusion(leaves[i], i, n, proof, b"\x00" * 32)
            if n > 1:
                assert not merkle.verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)
