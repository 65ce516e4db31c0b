"""Optional Ethereum anchor of the settlement ledger (extra `[evm]`): `anchor` (the ERC-20 token and
write-once checkpoint anchor on a chain: mirror, anchor, check), `backends` (in-process py-evm,
JSON-RPC to a lab node such as anvil) and the contract's Vyper source `SettlementToken.vy`."""
