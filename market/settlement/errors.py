"""Named errors of the settlement ledger, its keys, encodings and stores (fail loudly, name the field)."""
from __future__ import annotations


class SettlementError(ValueError):
    """Base class of every market/settlement error."""


class UnitError(SettlementError):
    """A value cannot be converted to the ledger's integer units (NaN, infinity)."""


class KeyError_(SettlementError):
    """A key is malformed, unregistered, or has the wrong role."""


class SignatureError(SettlementError):
    """An Ed25519 signature does not verify."""


class CanonicalEncodingError(SettlementError):
    """A value cannot be canonically encoded (floats, NaN, unknown types are refused)."""


class LedgerError(SettlementError):
    """An append or checkpoint was refused (bad signer, unregistered meter, bad amount)."""


class InsufficientSignatures(LedgerError):
    """A checkpoint gathered fewer than k valid validator signatures."""


class StoreError(SettlementError):
    """The persistence layer failed (I/O, schema, concurrent writer)."""
