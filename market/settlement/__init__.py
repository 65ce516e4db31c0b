"""Settlement ledger: signed hash chain, k-of-n Merkle checkpoints, delivery-backed integer tokens,
stores (SQLite, PostgreSQL), full verification, and an optional Ethereum anchor (`evm`).
Imports nothing else of the project, so the P2P market and the LEM settle on it alike."""
