"""The P2P tests settle on the ledger built by the settlement tests' builders."""
from __future__ import annotations

from tests.market.settlement.conftest import add_meter, keys, ledger_and_validators, new_ledger  # noqa: F401
