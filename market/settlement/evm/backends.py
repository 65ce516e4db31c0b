"""Where the optional Ethereum backend sends its transactions: a small contract, two chains.

`EvmBackend` needs three things: the accounts it may send from, `send(tx) -> receipt` (status,
contract_address), and `call(tx) -> bytes`; a revert raises `EvmError` with the contract's reason.
`EthTesterBackend` is an in-process py-evm chain (eth-tester) for tests; `JsonRpcBackend` speaks
standard Ethereum JSON-RPC (eth_sendTransaction from an unlocked account) to a lab node such as
`anvil` — only for local development chains, never with keys of value.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Protocol

from market.settlement.errors import SettlementError


class EvmError(SettlementError):
    """Compilation failed, a transaction reverted, a node failed, or the chain disagrees with the ledger."""


EVM_EXTRA = "the EVM backend needs the [evm] extra: pip install vyper==0.4.3 'eth-tester[py-evm]==0.13.0b1'"


class EvmBackend(Protocol):
    def accounts(self) -> list[str]: ...

    def send(self, tx: dict, what: str) -> dict:
        """Mine `tx` ({from, to?, data, gas}); return {'status': 1, 'contract_address': …} or raise EvmError."""
        ...

    def call(self, tx: dict) -> bytes: ...


class EthTesterBackend:
    def __init__(self) -> None:
        try:
            from eth_tester import EthereumTester, PyEVMBackend
            from eth_tester.exceptions import TransactionFailed
        except ImportError as exc:
            raise EvmError(EVM_EXTRA) from exc
        self.tester = EthereumTester(PyEVMBackend())
        self._failed = TransactionFailed

    def accounts(self) -> list[str]:
        return list(self.tester.get_accounts())

    def send(self, tx: dict, what: str) -> dict:
        tx = dict(tx, value=0)
        try:
            self.tester.call({k: v for k, v in tx.items() if k != "gas"})  # surfaces the revert reason
        except self._failed as exc:
            raise EvmError(f"{what}: reverted ({exc})") from None
        receipt = self.tester.get_transaction_receipt(self.tester.send_transaction(tx))
        if receipt["status"] != 1:
            raise EvmError(f"{what}: transaction failed")
        return {"status": 1, "contract_address": receipt.get("contract_address")}

    def call(self, tx: dict) -> bytes:
        raw = self.tester.call(tx)
        return bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)


class JsonRpcBackend:
    """Ethereum JSON-RPC over HTTP (e.g. `anvil` at http://127.0.0.1:8545); automining assumed."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url, self.timeout_s, self._id = url, timeout_s, 0

    def rpc(self, method: str, params: list):
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise EvmError(f"{self.url}: {method} failed ({exc})") from None
        if "error" in reply:
            raise EvmError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply["result"]

    @staticmethod
    def _wire(tx: dict) -> dict:
        out = {k: v for k, v in tx.items() if k in ("from", "to", "data")}
        if "gas" in tx:
            out["gas"] = hex(tx["gas"])
        out["value"] = "0x0"
        return out

    def accounts(self) -> list[str]:
        return list(self.rpc("eth_accounts", []))

    def send(self, tx: dict, what: str) -> dict:
        wire = self._wire(tx)
        try:
            self.rpc("eth_call", [{k: v for k, v in wire.items() if k != "gas"}, "latest"])
        except EvmError as exc:
            raise EvmError(f"{what}: reverted ({exc})") from None
        tx_hash = self.rpc("eth_sendTransaction", [wire])
        deadline = time.monotonic() + self.timeout_s
        while (receipt := self.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
            if time.monotonic() > deadline:
                raise EvmError(f"{what}: no receipt for {tx_hash} within {self.timeout_s} s")
            time.sleep(0.05)
        if int(receipt["status"], 16) != 1:
            raise EvmError(f"{what}: transaction {tx_hash} failed")
        return {"status": 1, "contract_address": receipt.get("contractAddress")}

    def call(self, tx: dict) -> bytes:
        return bytes.fromhex(self.rpc("eth_call", [self._wire(tx), "latest"])[2:])
