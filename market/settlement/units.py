"""Integer units of everything the ledger hashes, signs or settles (no floats in hashed data).

    energy        qty_wh                 integer watt-hours
    price         price_uusd_per_kwh     integer micro-USD per kWh  (= nano-USD per Wh;
                                         1 USD/MWh = 1000 uUSD/kWh)
    money/token   amount_ntok            integer nano-tokens; 1 token is pegged to 1 USD,
                                         so 1 ntok = 1 nano-USD
    time          ts_ms                  UTC epoch milliseconds; intervals are integers

The product of an energy and a price is exact:  qty_wh * price_uusd_per_kwh = value in ntok,
because uUSD/kWh * Wh = 1e-6 USD / 1e3 Wh * Wh = 1e-9 USD.  Conversions from floats (a DLMP in
USD/MWh from the LEM) happen once, at the boundary, with round-half-even, and refuse NaN/inf.
"""
from __future__ import annotations

import math

from market.settlement.errors import UnitError

UUSD_PER_KWH_PER_USD_PER_MWH = 1000
NTOK_PER_TOKEN = 1_000_000_000


def price_uusd_per_kwh_from_usd_per_mwh(price_usd_per_mwh: float, where: str = "price") -> int:
    """Convert a float price in USD/MWh to integer uUSD/kWh (x1000, rounded half-even)."""
    value = float(price_usd_per_mwh)
    if not math.isfinite(value):
        raise UnitError(f"{where}: non-finite price {price_usd_per_mwh!r} USD/MWh")
    return int(round(value * UUSD_PER_KWH_PER_USD_PER_MWH))


def usd_per_mwh_from_uusd_per_kwh(price_uusd_per_kwh: int) -> float:
    return price_uusd_per_kwh / UUSD_PER_KWH_PER_USD_PER_MWH


def value_ntok(qty_wh: int, price_uusd_per_kwh: int) -> int:
    """Exact value of an energy quantity at a price, in nano-tokens (= nano-USD)."""
    return int(qty_wh) * int(price_uusd_per_kwh)


def tokens_from_ntok(amount_ntok: int) -> float:
    """For display only (never hashed)."""
    return amount_ntok / NTOK_PER_TOKEN
