"""Settlement of one interval on the ledger, against signed meter readings.

The P2P market's bridge into `market.settlement`: it turns an interval's auction `Trade`s, meter
readings and network charges into ledger entries; the ledger knows nothing of auctions.

Amounts in ntok = Wh x uUSD/kWh.  Trades first, in trade order:
  * grid -> peer:    the buyer pays the grid: tokens leave the community — `burn` (grid_purchase).
  * peer -> grid:    the grid buys the seller's *verified* delivered Wh — `mint` (delivery).
  * peer -> peer:    `transfer` buyer -> seller for the verified delivered Wh (the ledger checks the
                     claim against the seller's signed export reading); McAfee's price gap goes
                     buyer -> operator; the network charge buyer -> DSO (DSO -> buyer if negative).
                     A seller fined `penalty_uusd_per_kwh` per undelivered Wh (burn).
Then the imbalance against the grid of last resort, from the readings:
  * import not covered by delivered purchases is bought from the grid at its sell price (burn);
  * export not sold is bought by the grid at its buy price (mint on verified delivery).
So every metered Wh is paid exactly once, and new tokens appear only against verified export.
A seller's export is consumed by its trades in trade order (deterministic).  Network charges apply
to peer-to-peer trades only (the grid's tariffs include the network).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from market.settlement.ledger import Ledger
from market.te.auction.charges import NetworkCharge
from market.te.auction.interval import GRID, Trade


@dataclass(frozen=True)
class SettlementPolicy:
    penalty_uusd_per_kwh: int = 0
    dso_account: str = "dso"
    operator_account: str = "operator"


@dataclass(frozen=True)
class Reading:
    seq: int
    export_wh: int
    import_wh: int


@dataclass
class IntervalSettlement:
    delivered_wh: list[int] = field(default_factory=list)        # per trade
    network_charge_ntok: list[int] = field(default_factory=list)  # per trade
    minted_ntok: int = 0
    burned_ntok: int = 0
    network_charges_ntok: int = 0
    operator_surplus_ntok: int = 0
    undelivered_wh: int = 0
    imbalance_import_wh: int = 0
    imbalance_export_wh: int = 0


class _Book:
    """Running per-interval accounts of what each participant exported (left) and bought."""

    def __init__(self, readings: dict[str, Reading]) -> None:
        self.left = {p: r.export_wh for p, r in readings.items()}
        self.bought: dict[str, int] = {}

    def deliver(self, seller: str, qty: int) -> int:
        delivered = min(qty, self.left.get(seller, 0))
        self.left[seller] = self.left.get(seller, 0) - delivered
        return delivered

    def buy(self, buyer: str, qty: int) -> None:
        self.bought[buyer] = self.bought.get(buyer, 0) + qty


def settle_interval(ledger: Ledger, trades: list[Trade], readings: dict[str, Reading],
                    location_of: dict[str, str], charge: NetworkCharge, grid_sell_uusd_per_kwh: int,
                    grid_buy_uusd_per_kwh: int, ts_ms: int,
                    policy: SettlementPolicy = SettlementPolicy()) -> IntervalSettlement:
    out, book = IntervalSettlement(), _Book(readings)
    for n, t in enumerate(trades):
        ref = f"{t.interval}:{n}"
        if t.seller_id == GRID:
            _burn(ledger, out, t.buyer_id, t.qty_wh * t.buyer_price_uusd_per_kwh, ts_ms, ref)
            book.buy(t.buyer_id, t.qty_wh)
            out.delivered_wh.append(t.qty_wh)
            out.network_charge_ntok.append(0)
            continue
        delivered = book.deliver(t.seller_id, t.qty_wh)
        out.delivered_wh.append(delivered)
        out.undelivered_wh += t.qty_wh - delivered
        seq = readings[t.seller_id].seq if delivered else -1
        net = 0
        if t.buyer_id == GRID:
            _mint(ledger, out, t.seller_id, seq, delivered, t.seller_price_uusd_per_kwh, ts_ms, ref)
        else:
            book.buy(t.buyer_id, delivered)
            net = _peer_payments(ledger, t, delivered, seq, ref, ts_ms, location_of, charge, policy, out)
        out.network_charge_ntok.append(net)
        if t.qty_wh > delivered and policy.penalty_uusd_per_kwh:
            amount = (t.qty_wh - delivered) * policy.penalty_uusd_per_kwh
            ledger.burn(t.seller_id, amount, "penalty", ts_ms, ref)
            out.burned_ntok += amount
    for p in sorted(readings):
        r = readings[p]
        short = r.import_wh - book.bought.get(p, 0)
        if short > 0:
            out.imbalance_import_wh += short
            _burn(ledger, out, p, short * grid_sell_uusd_per_kwh, ts_ms, f"imbalance:{p}")
        spill = book.left.get(p, 0)
        if spill > 0:
            out.imbalance_export_wh += spill
            _mint(ledger, out, p, r.seq, spill, grid_buy_uusd_per_kwh, ts_ms, f"imbalance:{p}")
    return out


def _burn(ledger: Ledger, out: IntervalSettlement, account: str, amount: int, ts_ms: int, ref: str) -> None:
    if amount > 0:
        ledger.burn(account, amount, "grid_purchase", ts_ms, ref)
        out.burned_ntok += amount


def _mint(ledger: Ledger, out: IntervalSettlement, account: str, seq: int, qty: int, price: int, ts_ms: int, ref: str) -> None:
    if qty > 0 and price > 0:
        ledger.mint_delivery(account, seq, qty, price, ts_ms, ref)
        out.minted_ntok += qty * price


def _peer_payments(ledger: Ledger, t: Trade, delivered: int, seq: int, ref: str, ts_ms: int,
                   location_of: dict[str, str], charge: NetworkCharge, policy: SettlementPolicy,
                   out: IntervalSettlement) -> int:
    if delivered and t.seller_price_uusd_per_kwh:
        ledger.transfer(t.buyer_id, t.seller_id, delivered * t.seller_price_uusd_per_kwh, "trade", ts_ms, ref,
                        reading_seq=seq, qty_wh=delivered, price_uusd_per_kwh=t.seller_price_uusd_per_kwh)
    gap = delivered * (t.buyer_price_uusd_per_kwh - t.seller_price_uusd_per_kwh)
    if gap:
        ledger.transfer(t.buyer_id, policy.operator_account, gap, "operator_surplus", ts_ms, ref)
        out.operator_surplus_ntok += gap
    net = delivered * charge.charge_uusd_per_kwh(location_of[t.seller_id], location_of[t.buyer_id], t.interval)
    if net > 0:
        ledger.transfer(t.buyer_id, policy.dso_account, net, "network_charge", ts_ms, ref)
    elif net < 0:
        ledger.transfer(policy.dso_account, t.buyer_id, -net, "network_credit", ts_ms, ref)
    out.network_charges_ntok += net
    return net
