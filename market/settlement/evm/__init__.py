"""Vyper source of the optional Ethereum settlement token + checkpoint anchor (see market.te.evm_anchor)."""
