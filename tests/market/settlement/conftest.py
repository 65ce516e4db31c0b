"""Shared builders for the ledger tests (and the P2P settlement test): deterministic keys and a small ledger."""
from __future__ import annotations

import pytest

from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, WitnessValidator, sign_reading

SEED = 11
VALIDATOR_NAMES = ("validator:dso", "validator:aggregator", "validator:community")


def keys():
    operator = KeyPair.derive(SEED, "operator")
    validators = [KeyPair.derive(SEED, n) for n in VALIDATOR_NAMES]
    return operator, validators


def new_ledger(store, threshold_k=2, credit_limit_ntok=10**15):
    operator, validators = keys()
    ledger = Ledger.create(store, operator, [(v.key_id, v.public_hex) for v in validators], threshold_k,
                           "test-ledger", credit_limit_ntok=credit_limit_ntok)
    return ledger, [WitnessValidator(v) for v in validators]


def add_meter(ledger, participant, interval=0, export_wh=0, import_wh=0):
    """Register `participant`'s meter (once) and record one signed reading; returns its seq."""
    meter = KeyPair.derive(SEED, f"meter:{participant}")
    if meter.key_id not in ledger.state.registry:
        ledger.register_key(meter.key_id, "meter", meter.public_hex, participant, 0)
    reading = {"meter_id": meter.key_id, "participant_id": participant, "interval": interval,
               "export_wh": export_wh, "import_wh": import_wh, "ts_ms": interval * 900_000}
    return ledger.record_meter_reading(reading, sign_reading(reading, meter))


@pytest.fixture
def ledger_and_validators():
    from market.settlement.store import FakeLedgerStore

    return new_ledger(FakeLedgerStore())
