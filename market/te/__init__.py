"""Transactive P2P market and settlement ledger."""
