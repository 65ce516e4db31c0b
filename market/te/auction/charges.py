"""Network-aware charges: what a trade pays the DSO for using the network between two locations.

`DlmpDifferenceCharge`: charge = DLMP(buyer location) - DLMP(seller location) per kWh, in
uUSD/kWh (may be negative: a trade that relieves congestion or losses earns a credit).  With
DLMPs from the LEM this is the nodal price difference, i.e. the loss + congestion + voltage rent
the trade causes.  `ZoneTariffCharge`: a fixed tariff per (seller zone, buyer zone) pair — a
distance/zone tariff for networks without DLMPs.  Either way charge_ntok = qty_wh x charge.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from market.te.auction.errors import PriceLookupError
from market.te.auction.prices import PriceLookup, location_key, price_uusd_per_kwh


class NetworkCharge(Protocol):
    def charge_uusd_per_kwh(self, seller_location: str, buyer_location: str, interval: int) -> int:
        """Integer network charge per kWh for energy moved seller -> buyer in `interval`."""
        ...


class DlmpDifferenceCharge:
    def __init__(self, prices: PriceLookup) -> None:
        self.prices = prices

    def charge_uusd_per_kwh(self, seller_location: str, buyer_location: str, interval: int) -> int:
        return (price_uusd_per_kwh(self.prices, buyer_location, interval)
                - price_uusd_per_kwh(self.prices, seller_location, interval))


class ZoneTariffCharge:
    """Tariff table {(seller_zone, buyer_zone): uUSD/kWh}; same-zone trades default to `same_zone`.
    `zone_of` maps location ids to zones."""

    def __init__(self, zone_of: Mapping[str, str], table: Mapping[tuple[str, str], int], same_zone_uusd_per_kwh: int = 0) -> None:
        self.zone_of = {location_key(loc, "zone tariff"): zone for loc, zone in zone_of.items()}
        self.table = {k: int(v) for k, v in table.items()}
        self.same_zone = int(same_zone_uusd_per_kwh)

    def charge_uusd_per_kwh(self, seller_location: str, buyer_location: str, interval: int) -> int:
        zs, zb = self._zone(seller_location), self._zone(buyer_location)
        if zs == zb and (zs, zb) not in self.table:
            return self.same_zone
        try:
            return self.table[(zs, zb)]
        except KeyError:
            raise PriceLookupError(f"zone tariff: no tariff from zone {zs!r} to zone {zb!r}") from None

    def _zone(self, location: str) -> str:
        zone = self.zone_of.get(location)  # fast path: already a normalized id
        if zone is None:
            zone = self.zone_of.get(location_key(location, "zone tariff"))
        if zone is None:
            raise PriceLookupError(f"zone tariff: location {location!r} has no zone")
        return zone


class NoCharge:
    def charge_uusd_per_kwh(self, seller_location: str, buyer_location: str, interval: int) -> int:
        return 0


def trade_charges_ntok(trades: Iterable, location_of: Mapping[str, str], charge: NetworkCharge) -> list[int]:
    """charge_ntok per trade (attributes interval, seller_id, buyer_id, qty_wh)."""
    return [t.qty_wh * charge.charge_uusd_per_kwh(location_of[t.seller_id], location_of[t.buyer_id], t.interval)
            for t in trades]
