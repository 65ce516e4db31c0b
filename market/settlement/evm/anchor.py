"""Optional Ethereum backend (extra `[evm]`: vyper, eth-tester[py-evm]): an ERC-20 settlement
token and a write-once checkpoint anchor, compiled offline from `SettlementToken.vy` beside this module.

`EvmSettlementChain` deploys the contract on an in-process py-evm chain (eth-tester) or, through
`JsonRpcBackend`, on a lab's local node such as `anvil` (docs/te.md).  `mirror_ledger` replays a ledger's token entries onto it, **one transaction per
interval** (mints, then transfers, then burns; reordering keeps every balance non-negative when
the ledger's own credit limit is 0), and anchors each checkpoint's Merkle root and statement hash.
`anchor_checkpoints` anchors the checkpoints of any ledger (credit accounts included) that are not
on the chain yet; `check_anchors` compares the ledger's checkpoints with what the chain holds.
With sidechains, the anchored ledger is the **main chain**: its checkpoints cover its records of
every sidechain checkpoint, so `check_side_through_main` follows a sidechain checkpoint to its
main-chain record, the main checkpoint covering that record, and that checkpoint's anchor.  Accounts are
mapped to deterministic addresses (first 20 bytes of SHA-256("colorgrid.te|" + account)); the
operator, who deployed the contract, moves tokens on the participants' behalf as the ledger did.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from market.settlement import canonical
from market.settlement.evm.backends import EVM_EXTRA, EthTesterBackend, EvmBackend, EvmError
from market.settlement.store import LedgerStore

CONTRACT_PATH = Path(__file__).resolve().parent / "SettlementToken.vy"
MAX_BATCH = 256  # the contract's DynArray bound
SETTLE_SIG = "settle_batch(address[],uint256[],address[],address[],uint256[],address[],uint256[])"


def compile_contract() -> dict:
    """Compile the Vyper source offline; returns {'abi': [...], 'bytecode': '0x…'}."""
    try:
        import vyper
    except ImportError as exc:
        raise EvmError(EVM_EXTRA) from exc
    return vyper.compile_code(CONTRACT_PATH.read_text(), output_formats=["abi", "bytecode"])


def address_of(account: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(hashlib.sha256(f"colorgrid.te|{account}".encode()).digest()[:20])


class EvmSettlementChain:
    """The deployed contract on a backend (in-process py-evm by default); `address` attaches to
    an existing deployment instead of deploying a new one."""

    def __init__(self, backend: EvmBackend | None = None, address: str | None = None,
                 name: str = "colorgrid settlement token", symbol: str = "CGT") -> None:
        try:
            import eth_abi
            from eth_utils import function_signature_to_4byte_selector
        except ImportError as exc:
            raise EvmError(EVM_EXTRA) from exc
        self._abi, self._selector = eth_abi, function_signature_to_4byte_selector
        self.backend = backend or EthTesterBackend()
        self.operator = self.backend.accounts()[0]
        self.transactions = 0
        if address is None:
            data = compile_contract()["bytecode"] + eth_abi.encode(["string", "string", "uint8"], [name, symbol, 9]).hex()
            address = self.backend.send({"from": self.operator, "gas": 5_000_000, "data": data}, "deploy")["contract_address"]
        self.address = address

    def transact(self, signature: str, types: list[str], values: list, sender: str | None = None) -> dict:
        data = "0x" + self._selector(signature).hex() + self._abi.encode(types, values).hex()
        tx = {"from": sender or self.operator, "to": self.address, "gas": 25_000_000, "data": data}
        receipt = self.backend.send(tx, signature.split("(")[0])
        self.transactions += 1
        return receipt

    def call(self, signature: str, types: list[str], values: list, returns: list[str]):
        data = "0x" + self._selector(signature).hex() + self._abi.encode(types, values).hex()
        out = self._abi.decode(returns, self.backend.call({"from": self.operator, "to": self.address, "data": data}))
        return out[0] if len(out) == 1 else out

    def settle_batch(self, mints: list[tuple[str, int]], transfers: list[tuple[str, str, int]],
                     burns: list[tuple[str, int]]) -> None:
        """One interval in one transaction; beyond MAX_BATCH items per list, the mints, transfers
        and burns go in successive transactions of their own (same order, same feasibility)."""
        if max(len(mints), len(transfers), len(burns)) <= MAX_BATCH:
            return self._settle(mints, transfers, burns)
        for i in range(0, len(mints), MAX_BATCH):
            self._settle(mints[i:i + MAX_BATCH], [], [])
        for i in range(0, len(transfers), MAX_BATCH):
            self._settle([], transfers[i:i + MAX_BATCH], [])
        for i in range(0, len(burns), MAX_BATCH):
            self._settle([], [], burns[i:i + MAX_BATCH])

    def _settle(self, m: list, t: list, b: list) -> None:
        self.transact(SETTLE_SIG, ["address[]", "uint256[]", "address[]", "address[]", "uint256[]", "address[]",
                                   "uint256[]"],
                      [[address_of(a) for a, _ in m], [x for _, x in m],
                       [address_of(s) for s, _, _ in t], [address_of(r) for _, r, _ in t], [x for _, _, x in t],
                       [address_of(a) for a, _ in b], [x for _, x in b]])

    def anchor(self, period: int, root: bytes, statement_hash: bytes) -> None:
        self.transact("anchor(uint256,bytes32,bytes32)", ["uint256", "bytes32", "bytes32"], [period, root, statement_hash])

    def anchored(self, period: int) -> tuple[bytes, bytes]:
        return (self.call("anchor_root(uint256)", ["uint256"], [period], ["bytes32"]),
                self.call("anchor_statement(uint256)", ["uint256"], [period], ["bytes32"]))

    def balance_ntok(self, account: str) -> int:
        return self.call("balanceOf(address)", ["address"], [address_of(account)], ["uint256"])

    def total_supply_ntok(self) -> int:
        return self.call("totalSupply()", [], [], ["uint256"])


@dataclass
class MirrorReport:
    batches: int = 0
    anchors: int = 0
    accounts: set = field(default_factory=set)


def mirror_ledger(store: LedgerStore, chain: EvmSettlementChain) -> MirrorReport:
    """Replay token entries, one settle_batch per ts_ms (interval), anchoring each checkpoint."""
    report = MirrorReport()
    cps = {cp.last_seq: cp for cp in store.checkpoints()}
    batch: tuple[list, list, list] = ([], [], [])
    batch_ts = None

    def flush():
        if any(batch):
            chain.settle_batch(*batch)
            report.batches += 1
        for part in batch:
            part.clear()

    for row in store.entries():
        body = canonical.decode(row.body)
        if body["ts_ms"] != batch_ts:
            flush()
            batch_ts = body["ts_ms"]
        p = body["payload"]
        if row.kind == "mint":
            batch[0].append((p["account"], p["amount_ntok"]))
            report.accounts.add(p["account"])
        elif row.kind == "transfer":
            batch[1].append((p["from"], p["to"], p["amount_ntok"]))
            report.accounts.update((p["from"], p["to"]))
        elif row.kind == "burn":
            batch[2].append((p["account"], p["amount_ntok"]))
        if row.seq in cps:
            flush()
            cp = cps[row.seq]
            chain.anchor(cp.period, bytes.fromhex(canonical.decode(cp.statement)["root"]),
                         hashlib.sha256(cp.statement).digest())
            report.anchors += 1
    flush()
    return report


def anchor_checkpoints(store: LedgerStore, chain: EvmSettlementChain) -> list[int]:
    """Anchor every checkpoint of any ledger that the chain does not hold yet; the periods anchored now."""
    done = []
    for cp in store.checkpoints():
        if chain.anchored(cp.period)[1] == b"\x00" * 32:
            chain.anchor(cp.period, bytes.fromhex(canonical.decode(cp.statement)["root"]),
                         hashlib.sha256(cp.statement).digest())
            done.append(cp.period)
    return done


def check_anchors(store: LedgerStore, chain: EvmSettlementChain) -> list[int]:
    """Periods whose stored checkpoint differs from the chain's anchor (empty list: all match)."""
    bad = []
    for cp in store.checkpoints():
        root, statement_hash = chain.anchored(cp.period)
        if root.hex() != canonical.decode(cp.statement)["root"] or statement_hash != hashlib.sha256(cp.statement).digest():
            bad.append(cp.period)
    return bad


@dataclass
class SideAnchorReport:
    """A sidechain's checkpoints as the public anchor of the main chain covers them."""
    ledger_id: str
    checkpoints: int = 0
    anchored: int = 0             # recorded on main, in a main checkpoint whose anchor matches
    not_recorded: int = 0         # not on the main chain yet (the next record round takes them)
    not_in_main_checkpoint: int = 0   # recorded, but no main checkpoint covers the record yet
    problems: list = field(default_factory=list)


def check_side_through_main(side_store: LedgerStore, main_store: LedgerStore,
                            chain: EvmSettlementChain) -> SideAnchorReport:
    """Sidechain checkpoint -> main-chain record of it -> main checkpoint covering the record ->
    that checkpoint's anchor on the public chain.  The anchor holds main-chain checkpoints only;
    a sidechain is anchored through them.  Problems name the sidechain period and the main period."""
    from market.settlement.chains import check_against_main
    from market.settlement.ledger import Ledger

    side, main = Ledger(side_store), Ledger(main_store)
    report = SideAnchorReport(side.state.ledger_id)
    cps = side_store.checkpoints()
    report.checkpoints = len(cps)
    found, _ = check_against_main(side_store, main_store)
    report.problems.extend(found)
    record = main.state.chains.get(side.state.ledger_id)
    if record is None:
        report.not_recorded = len(cps)
        return report
    main_cps = main_store.checkpoints()
    anchors: dict[int, bool] = {}
    for i, cp in enumerate(cps):
        if i >= len(record["records"]):
            report.not_recorded += 1
            continue
        main_seq = record["records"][i]
        covering = next((m for m in main_cps if m.first_seq <= main_seq <= m.last_seq), None)
        if covering is None:
            report.not_in_main_checkpoint += 1
            continue
        if covering.period not in anchors:
            root, statement_hash = chain.anchored(covering.period)
            anchors[covering.period] = (root.hex() == canonical.decode(covering.statement)["root"]
                                        and statement_hash == hashlib.sha256(covering.statement).digest())
        if anchors[covering.period]:
            report.anchored += 1
        else:
            report.problems.append(f"chain {report.ledger_id!r}: checkpoint {cp.period} is recorded at main entry "
                                   f"{main_seq}, in main checkpoint {covering.period}, which differs from the "
                                   "public anchor (or is not anchored)")
    return report
