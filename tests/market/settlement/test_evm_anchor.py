"""Optional Ethereum backend: the Vyper contract on an in-process py-evm chain mirrors a ledger.

Needs the [evm] extra (vyper==0.4.3, eth-tester[py-evm]==0.13.0b1); missing packages fail here.
"""
from __future__ import annotations

import pytest

from market.settlement.evm.anchor import (EvmError, EvmSettlementChain, address_of, anchor_checkpoints, check_anchors,
                                  mirror_ledger)
from market.settlement.store import FakeLedgerStore

from .conftest import add_meter, new_ledger


@pytest.fixture(scope="module")
def mirrored():
    store = FakeLedgerStore()
    ledger, validators = new_ledger(store, credit_limit_ntok=0)  # the chain cannot go negative either
    for t in range(3):  # three intervals: deliveries minted, P2P payments, grid purchases burned
        ts = t * 900_000
        r1 = add_meter(ledger, "p1", interval=t, export_wh=1_000 + t)
        r2 = add_meter(ledger, "p2", interval=t, export_wh=500)
        ledger.mint_delivery("p1", r1, 600, 40_000, ts)
        ledger.mint_delivery("p2", r2, 500, 40_000, ts)
        ledger.transfer("p2", "p1", 100 * 90_000, "trade", ts, reading_seq=r1, qty_wh=100, price_uusd_per_kwh=90_000)
        ledger.transfer("p1", "dso", 123, "network_charge", ts)
        ledger.burn("p1", 5_000_000, "grid_purchase", ts)
        ledger.checkpoint(t + 1, validators)
    chain = EvmSettlementChain()
    report = mirror_ledger(store, chain)
    return store, ledger, chain, report


def test_chain_balances_and_supply_equal_the_ledger(mirrored):
    store, ledger, chain, report = mirrored
    assert report.anchors == 3 and report.batches == 3  # one transaction per interval
    for account, balance in ledger.state.balances.items():
        assert chain.balance_ntok(account) == balance
    assert chain.total_supply_ntok() == ledger.state.minted_ntok - ledger.state.burned_ntok
    assert check_anchors(store, chain) == []


def test_anchor_is_write_once_and_detects_a_rewritten_checkpoint(mirrored):
    store, _, chain, _ = mirrored
    with pytest.raises(EvmError, match="already anchored"):
        chain.anchor(1, b"\x01" * 32, b"\x02" * 32)
    cp = store.cps[1]
    store.cps[1] = cp._replace(statement=cp.statement.replace(b'"period":2', b'"period":2 '))
    try:
        assert check_anchors(store, chain) == [2]
    finally:
        store.cps[1] = cp


def test_only_the_operator_mints_and_batches_revert_whole(mirrored):
    _, ledger, chain, _ = mirrored
    outsider = chain.backend.accounts()[1]
    with pytest.raises(EvmError, match="only the operator"):
        chain.transact("mint(address,uint256)", ["address", "uint256"], [address_of("x"), 1], sender=outsider)
    before = chain.balance_ntok("p1")
    with pytest.raises(EvmError, match="insufficient balance"):
        chain.settle_batch([("p1", 7)], [("p1", "p2", before + 10**12)], [])
    assert chain.balance_ntok("p1") == before  # the mint in the reverted batch did not happen


def test_anchor_checkpoints_of_a_credit_ledger_once(mirrored):
    store, _, _, _ = mirrored
    chain = EvmSettlementChain()  # a fresh deployment: nothing anchored yet
    assert check_anchors(store, chain) == [1, 2, 3]
    assert anchor_checkpoints(store, chain) == [1, 2, 3]
    assert anchor_checkpoints(store, chain) == [] and check_anchors(store, chain) == []
    attached = EvmSettlementChain(chain.backend, address=chain.address)  # attach, do not redeploy
    assert attached.anchored(2) == chain.anchored(2)
