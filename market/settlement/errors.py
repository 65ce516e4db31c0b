"""Named errors of the transactive market and its ledger (fail loudly, name the field)."""
from __future__ import annotations


class TeError(ValueError):
    """Base class of every market/te error."""


class OrderError(TeError):
    """An order failed validation; the message names the order and the field."""


class ParticipantError(TeError):
    """A participant is unknown, duplicated or malformed."""


class KeyError_(TeError):
    """A key is malformed, unregistered, or has the wrong role."""


class SignatureError(TeError):
    """An Ed25519 signature does not verify."""


class CanonicalEncodingError(TeError):
    """A value cannot be canonically encoded (floats, NaN, unknown types are refused)."""


class PriceLookupError(TeError):
    """No price for a (location, interval), or a non-finite price."""


class AuctionError(TeError):
    """The clearing met inconsistent input (e.g. mismatched array lengths)."""


class BookError(TeError):
    """Order-book operation refused (duplicate id, unknown id on cancel)."""


class LedgerError(TeError):
    """An append or checkpoint was refused (bad signer, unregistered meter, bad amount)."""


class InsufficientSignatures(LedgerError):
    """A checkpoint gathered fewer than k valid validator signatures."""


class StoreError(TeError):
    """The persistence layer failed (I/O, schema, concurrent writer)."""
