"""Named errors of the P2P market (fail loudly, name the order or field).

Errors of the ledger it settles on (keys, signatures, stores) are `market.settlement.errors`.
"""
from __future__ import annotations


class TeError(ValueError):
    """Base class of every market/te error."""


class OrderError(TeError):
    """An order failed validation; the message names the order and the field."""


class ParticipantError(TeError):
    """A participant is unknown, duplicated or malformed."""


class PriceLookupError(TeError):
    """No price for a (location, interval), a malformed location, or a non-finite price."""


class AuctionError(TeError):
    """The clearing met inconsistent input (e.g. mismatched array lengths)."""


class BookError(TeError):
    """Order-book operation refused (duplicate id, unknown id on cancel)."""
