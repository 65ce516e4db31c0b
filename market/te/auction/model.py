"""Data model of the P2P market: participants, limit orders, and their validation.

Units (see `market.settlement.units`): `qty_wh` integer Wh, `price_uusd_per_kwh` integer micro-USD per
kWh, intervals are integers (0 .. n-1 within a day), `seq` is the arrival sequence number used
for time priority.  Every field is checked; a bad order raises `OrderError` naming the order
and the field, so a service can log it and keep running.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from market.settlement import canonical
from market.settlement.keys import KeyPair, KeyRegistry, verify
from market.te.auction.errors import OrderError, ParticipantError
from vocab.location import LocationError, normalize

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)
MAX_PRICE_UUSD_PER_KWH = 100_000_000  # 100 USD/kWh: a sanity cap, not a market rule
MAX_QTY_WH = 1_000_000_000_000  # 1 TWh per order: refuses garbage and int64 overflow


@dataclass(frozen=True, slots=True)
class Participant:
    """A prosumer (or consumer, or producer) at a network location, identified by a key id.

    `location` is a location id (`vocab.location`: `"671.1"` or a whole bus `"671"`), stored
    normalized; a malformed one raises ParticipantError naming the participant and the field."""

    participant_id: str
    location: str
    key_id: str
    has_pv: bool = False

    def __post_init__(self) -> None:
        for name in ("participant_id", "location", "key_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ParticipantError(f"participant {self.participant_id!r}: {name} must be a non-empty str")
        try:
            object.__setattr__(self, "location", normalize(self.location))
        except LocationError as exc:
            raise ParticipantError(f"participant {self.participant_id!r}: location {self.location!r} "
                                   f"is not a location id ({exc})") from None


@dataclass(frozen=True, slots=True)
class Order:
    """A limit order for one interval: buy (bid) or sell (ask) up to `qty_wh` at `price_uusd_per_kwh`."""

    order_id: str
    participant_id: str
    side: str
    interval: int
    qty_wh: int
    price_uusd_per_kwh: int
    seq: int = 0

    def payload(self) -> dict:
        return {"order_id": self.order_id, "participant_id": self.participant_id, "side": self.side,
                "interval": self.interval, "qty_wh": self.qty_wh,
                "price_uusd_per_kwh": self.price_uusd_per_kwh, "seq": self.seq}


def _int_field(order_id: str, name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OrderError(f"order {order_id!r}: {name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise OrderError(f"order {order_id!r}: {name}={value} outside [{lo}, {hi}]")
    return value


_INT_FIELDS = (("qty_wh", 1, MAX_QTY_WH), ("price_uusd_per_kwh", 0, MAX_PRICE_UUSD_PER_KWH), ("seq", 0, 2**62))


def validate_order(order: Order, participants: Mapping[str, Participant] | None = None,
                   n_intervals: int | None = None) -> Order:
    """Check every field of `order`; return it unchanged or raise OrderError naming the field."""
    oid = order.order_id
    if type(oid) is not str or not oid:
        raise OrderError(f"order {oid!r}: order_id must be a non-empty str")
    if type(order.participant_id) is not str or not order.participant_id:
        raise OrderError(f"order {oid!r}: participant_id must be a non-empty str")
    if participants is not None and order.participant_id not in participants:
        raise OrderError(f"order {oid!r}: participant_id {order.participant_id!r} is not registered")
    if order.side != BUY and order.side != SELL:
        raise OrderError(f"order {oid!r}: side must be one of {SIDES}, got {order.side!r}")
    hi_interval = (n_intervals - 1) if n_intervals is not None else 2**31 - 1
    value = order.interval
    if type(value) is not int or not 0 <= value <= hi_interval:
        _int_field(oid, "interval", value, 0, hi_interval)
    for name, lo, hi in _INT_FIELDS:
        value = getattr(order, name)
        if type(value) is not int or not lo <= value <= hi:  # slow path: numpy ints, or raise
            _int_field(oid, name, value, lo, hi)
    return order


def order_from_mapping(data: Mapping, where: str = "order") -> Order:
    """Build and validate an Order from a decoded message; missing fields are named."""
    fields = ("order_id", "participant_id", "side", "interval", "qty_wh", "price_uusd_per_kwh")
    missing = [f for f in fields if f not in data]
    if missing:
        raise OrderError(f"{where}: missing field(s) {', '.join(missing)}")
    order = Order(**{f: data[f] for f in fields}, seq=data.get("seq", 0))
    return validate_order(order)


def sign_order(order: Order, key: KeyPair) -> bytes:
    """Ed25519 signature of the order's canonical encoding by the participant's key."""
    return key.sign(canonical.encode(order.payload(), f"order {order.order_id}"))


def verify_order(order: Order, signature: bytes, participant: Participant, registry: KeyRegistry) -> None:
    """Raise unless the order is signed by the registered key of its participant."""
    if order.participant_id != participant.participant_id:
        raise OrderError(f"order {order.order_id!r}: participant_id does not match the signer")
    public_hex = registry.public_hex(participant.key_id, role="participant")
    verify(public_hex, signature, canonical.encode(order.payload()), f"order {order.order_id!r}")


class OrderArrays:
    """Column view of one interval's orders for vectorized clearing.

    `rank` is each order's position in the sorted order ids: the deterministic final tie-break.
    """

    __slots__ = ("order_ids", "is_buy", "price", "qty", "seq", "rank")

    def __init__(self, is_buy, price, qty, seq, rank=None, order_ids=None) -> None:
        self.is_buy = np.asarray(is_buy, dtype=bool)
        self.price = np.asarray(price, dtype=np.int64)
        self.qty = np.asarray(qty, dtype=np.int64)
        self.seq = np.asarray(seq, dtype=np.int64)
        n = self.is_buy.shape[0]
        self.rank = np.arange(n, dtype=np.int64) if rank is None else np.asarray(rank, dtype=np.int64)
        self.order_ids = order_ids
        for name in ("price", "qty", "seq", "rank"):
            if getattr(self, name).shape != (n,):
                raise OrderError(f"order arrays: {name} has shape {getattr(self, name).shape}, expected ({n},)")
        if n and (self.qty.min() <= 0):
            raise OrderError(f"order arrays: qty_wh must be > 0 (order index {int(np.argmin(self.qty))})")
        if n and (self.price.min() < 0):
            raise OrderError(f"order arrays: price_uusd_per_kwh must be >= 0 (order index {int(np.argmin(self.price))})")

    def __len__(self) -> int:
        return int(self.is_buy.shape[0])

    @classmethod
    def from_orders(cls, orders: Iterable[Order]) -> "OrderArrays":
        orders = list(orders)
        ids = [o.order_id for o in orders]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[0]
            raise OrderError(f"order {dup!r}: duplicate order_id")
        rank = np.empty(len(ids), dtype=np.int64)
        rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        return cls([o.side == BUY for o in orders], [o.price_uusd_per_kwh for o in orders],
                   [o.qty_wh for o in orders], [o.seq for o in orders], rank, ids)
