"""Simulate a day of P2P trading end to end: orders -> clearing -> meter readings -> ledger.

Per interval: every participant with a non-zero forecast position submits one signed limit
order (verified against its registered key before it is accepted); the market clears it (call
auction with the grid as buyer/seller of last resort, McAfee, or a continuous order book in a
random arrival order); each meter signs its reading; the ledger settles the trades and the
imbalance (`settle.settle_interval`) in one atomic batch; every `checkpoint_every`
intervals the validators co-sign a Merkle checkpoint.  No wall clock enters hashed data:
ts_ms = day_start_ms + interval x interval length.  Keys derive from the seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from market.settlement.keys import KeyPair, KeyRegistry
from market.settlement.ledger import Ledger, WitnessValidator, sign_reading
from market.settlement.store import LedgerStore
from market.settlement.verify import VerificationReport, verify_ledger
from market.te.auction.call_auction import AuctionConfig
from market.te.auction.charges import DlmpDifferenceCharge, NetworkCharge, NoCharge
from market.te.auction.errors import TeError
from market.te.auction.interval import GRID, GridOfLastResort, Trade, clear_interval
from market.te.auction.model import BUY, SELL, Order, sign_order, verify_order
from market.te.auction.order_book import OrderBook
from market.te.auction.prices import FlatTariff, PriceLookup, ResampledLookup, TablePriceLookup
from market.te.auction.scenario import PCC, build_scenario, participant_keys, synthetic_dlmps
from market.te.auction.settle import Reading, SettlementPolicy, settle_interval

MECHANISMS = ("call", "mcafee", "cda")
DAY_START_MS = 1_781_740_800_000  # 2026-06-18T00:00:00Z, a fixed simulated day
VALIDATORS = ("validator:dso", "validator:aggregator", "validator:community")


@dataclass(frozen=True)
class SimConfig:
    participants: int = 200
    intervals: int = 96
    seed: int = 0
    mechanism: str = "call"
    pv_share: float = 0.5
    grid_sell_usd_per_mwh: float = 250.0
    grid_buy_usd_per_mwh: float = 40.0
    k_num: int = 1
    k_den: int = 2
    tie_break: str = "time"
    charges: str = "dlmp"
    checkpoint_every: int = 4
    threshold_k: int = 2
    penalty_uusd_per_kwh: int = 0
    periodic_burn_ppm: int = 0      # share of every positive balance burned per burn period (0: none)
    periodic_burn_every: int = 0    # intervals per burn period (0: none)

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise TeError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if self.participants < 1 or self.intervals < 1 or self.checkpoint_every < 1:
            raise TeError("participants, intervals and checkpoint_every must be >= 1")
        AuctionConfig(self.k_num, self.k_den, self.tie_break)  # validates the k-rule and tie-break
        if not 0 <= self.periodic_burn_ppm <= 1_000_000 or self.periodic_burn_every < 0 \
                or (self.periodic_burn_ppm > 0) != (self.periodic_burn_every > 0):
            raise TeError("periodic burn: give both periodic_burn_ppm (1..1000000) and periodic_burn_every (>= 1), "
                          "or neither")
        if self.charges not in ("dlmp", "none"):
            raise TeError(f"charges must be 'dlmp' or 'none', got {self.charges!r}")


@dataclass
class DayResult:
    orders: list[tuple] = field(default_factory=list)     # see ORDER_COLUMNS
    trades: list[tuple] = field(default_factory=list)     # see TRADE_COLUMNS
    intervals: list[tuple] = field(default_factory=list)  # see INTERVAL_COLUMNS
    balances: list[tuple] = field(default_factory=list)   # see BALANCE_COLUMNS
    report: VerificationReport | None = None
    totals: dict = field(default_factory=dict)


ORDER_COLUMNS = ("interval", "order_id", "participant_id", "location", "side", "qty_wh", "price_uusd_per_kwh",
                 "seq", "filled_wh")
TRADE_COLUMNS = ("interval", "trade_id", "buyer_id", "seller_id", "buy_order_id", "sell_order_id", "qty_wh", "delivered_wh",
                 "buyer_price_uusd_per_kwh", "seller_price_uusd_per_kwh", "network_charge_ntok")
INTERVAL_COLUMNS = ("interval", "start_ts_ms", "clearing_price_uusd_per_kwh", "traded_wh", "p2p_wh",
                    "grid_sold_wh", "grid_bought_wh", "imbalance_import_wh", "imbalance_export_wh",
                    "grid_sell_price_uusd_per_kwh", "grid_buy_price_uusd_per_kwh", "network_charges_ntok",
                    "operator_surplus_ntok", "minted_ntok", "burned_ntok")
BALANCE_COLUMNS = ("account", "kind", "location", "has_pv", "balance_ntok", "bought_wh", "sold_wh", "delivered_wh",
                   "exported_wh", "imported_wh")


def _orders(t: int, sc, cfg: SimConfig, grid_sell: int, grid_buy: int, pkeys, registry) -> list[Order]:
    orders = []
    for arrival, i in enumerate(sc.arrival[t].tolist()):
        net = int(sc.forecast_net_wh[i, t])
        if net == 0:
            continue
        p = sc.participants[i]
        price = grid_buy + int(sc.limit_u[i, t] * (grid_sell - grid_buy))
        order = Order(f"{t:03d}-{p.participant_id}", p.participant_id, SELL if net > 0 else BUY, t, abs(net),
                      price, arrival)
        verify_order(order, sign_order(order, pkeys[p.participant_id]), p, registry)  # identity check
        orders.append(order)
    return orders


def _clear(t: int, orders: list[Order], cfg: SimConfig, grid: GridOfLastResort) -> tuple[list[Trade], dict, int | None]:
    if cfg.mechanism == "cda":
        book = OrderBook(t)
        for o in orders:
            book.submit(o)
        trades = [Trade(t, b.buyer_id, b.seller_id, b.buy_order_id, b.sell_order_id, b.qty_wh,
                        b.price_uusd_per_kwh, b.price_uusd_per_kwh) for b in book.trades]
        fills: dict[str, int] = {}
        for b in book.trades:
            fills[b.buy_order_id] = fills.get(b.buy_order_id, 0) + b.qty_wh
            fills[b.sell_order_id] = fills.get(b.sell_order_id, 0) + b.qty_wh
        return trades, fills, None
    auction = AuctionConfig(cfg.k_num, cfg.k_den, cfg.tie_break, "mcafee" if cfg.mechanism == "mcafee" else "uniform")
    res = clear_interval(t, orders, auction, grid)
    return res.trades, res.fill_of(), res.result.price_uusd_per_kwh


def _setup_ledger(store: LedgerStore, cfg: SimConfig, sc, pkeys, mkeys,
                  ledger_id: str | None = None) -> tuple[Ledger, list, KeyPair]:
    operator = KeyPair.derive(cfg.seed, "operator")
    validators = [KeyPair.derive(cfg.seed, v) for v in VALIDATORS]
    burn = None
    if cfg.periodic_burn_ppm:
        burn = {"period_ms": cfg.periodic_burn_every * (86_400_000 // cfg.intervals), "rate_ppm": cfg.periodic_burn_ppm}
    ledger = Ledger.create(store, operator, [(v.key_id, v.public_hex) for v in validators], cfg.threshold_k,
                           ledger_id or f"colorgrid-te-seed{cfg.seed}", DAY_START_MS, credit_limit_ntok=10**18,
                           periodic_burn=burn)
    with ledger.batch():
        for p in sc.participants:
            ledger.register_key(p.key_id, "participant", pkeys[p.participant_id].public_hex, p.participant_id, DAY_START_MS)
            ledger.register_key(mkeys[p.participant_id].key_id, "meter", mkeys[p.participant_id].public_hex,
                                p.participant_id, DAY_START_MS)
    return ledger, [WitnessValidator(v) for v in validators], operator


def run_day(cfg: SimConfig, store: LedgerStore, prices: PriceLookup | None = None, verify_workers: int = 1) -> DayResult:
    """Simulate the day; `prices` are DLMPs per (bus, interval) (synthetic if None).  A
    `TablePriceLookup` (the LEM's dlmp.csv) places participants on its buses and maps each P2P
    interval to the LEM interval covering it."""
    buses = None
    if isinstance(prices, TablePriceLookup):  # e.g. the LEM's dlmp.csv: its buses, resampled in time
        buses = prices.buses()
        prices = ResampledLookup(prices, prices.n_intervals(), cfg.intervals)
    sc = build_scenario(cfg.participants, cfg.intervals, cfg.seed, cfg.pv_share, buses)
    prices = prices or synthetic_dlmps(cfg.intervals)
    charge: NetworkCharge = DlmpDifferenceCharge(prices) if cfg.charges == "dlmp" else NoCharge()
    grid = GridOfLastResort(FlatTariff(cfg.grid_sell_usd_per_mwh), FlatTariff(cfg.grid_buy_usd_per_mwh), PCC)
    pkeys, mkeys = participant_keys(cfg.seed, sc.participants)
    registry = KeyRegistry()
    for p in sc.participants:
        registry.register(p.key_id, "participant", pkeys[p.participant_id].public_hex, p.participant_id)
    ledger, validators, operator = _setup_ledger(store, cfg, sc, pkeys, mkeys)
    location_of = {p.participant_id: p.location for p in sc.participants}
    location_of[GRID] = PCC
    out = DayResult()
    stats = {p.participant_id: [0, 0, 0, 0, 0] for p in sc.participants}  # bought, sold, delivered, exp, imp
    interval_ms = 86_400_000 // cfg.intervals
    for t in range(cfg.intervals):
        ts_ms = DAY_START_MS + t * interval_ms
        grid_sell, grid_buy = grid.prices(t)
        orders = _orders(t, sc, cfg, grid_sell, grid_buy, pkeys, registry)
        trades, fills, price = _clear(t, orders, cfg, grid)
        with ledger.batch():
            ledger.burn_periodic(ts_ms)  # the periods that ended by this interval (only with a policy)
            readings = {}
            for i, p in enumerate(sc.participants):
                net = int(sc.actual_net_wh[i, t])
                reading = {"meter_id": mkeys[p.participant_id].key_id, "participant_id": p.participant_id,
                           "interval": t, "export_wh": max(net, 0), "import_wh": max(-net, 0), "ts_ms": ts_ms}
                seq = ledger.record_meter_reading(reading, sign_reading(reading, mkeys[p.participant_id]))
                readings[p.participant_id] = Reading(seq, max(net, 0), max(-net, 0))
                stats[p.participant_id][3] += max(net, 0)
                stats[p.participant_id][4] += max(-net, 0)
            st = settle_interval(ledger, trades, readings, location_of, charge, grid_sell, grid_buy, ts_ms,
                                 SettlementPolicy(cfg.penalty_uusd_per_kwh))
        if t == cfg.intervals - 1:  # the periods ending with the day, before its last checkpoint
            ledger.burn_periodic(DAY_START_MS + cfg.intervals * interval_ms)
        if (t + 1) % cfg.checkpoint_every == 0 or t == cfg.intervals - 1:
            ledger.checkpoint((t + 1 + cfg.checkpoint_every - 1) // cfg.checkpoint_every, validators)
        _record(out, t, ts_ms, orders, fills, trades, st, price, grid_sell, grid_buy, location_of, stats)
    out.report = verify_ledger(store, operator.public_hex, verify_workers)
    _balances(out, ledger, sc, stats)
    return out


def _record(out: DayResult, t, ts_ms, orders, fills, trades, st, price, grid_sell, grid_buy, location_of, stats) -> None:
    for o in orders:
        out.orders.append((t, o.order_id, o.participant_id, location_of[o.participant_id], o.side, o.qty_wh,
                           o.price_uusd_per_kwh, o.seq, fills.get(o.order_id, 0)))
    p2p = grid_sold = grid_bought = 0
    for n, (tr, delivered, net) in enumerate(zip(trades, st.delivered_wh, st.network_charge_ntok)):
        out.trades.append((t, f"{t:03d}-{n:04d}", tr.buyer_id, tr.seller_id, tr.buy_order_id, tr.sell_order_id,
                           tr.qty_wh, delivered,
                           tr.buyer_price_uusd_per_kwh, tr.seller_price_uusd_per_kwh, net))
        if tr.seller_id == GRID:
            grid_sold += tr.qty_wh
        elif tr.buyer_id == GRID:
            grid_bought += tr.qty_wh
        else:
            p2p += tr.qty_wh
        if tr.buyer_id != GRID:
            stats[tr.buyer_id][0] += tr.qty_wh
        if tr.seller_id != GRID:
            stats[tr.seller_id][1] += tr.qty_wh
            stats[tr.seller_id][2] += delivered
    out.intervals.append((t, ts_ms, price, p2p + grid_sold + grid_bought, p2p, grid_sold, grid_bought,
                          st.imbalance_import_wh, st.imbalance_export_wh, grid_sell, grid_buy,
                          st.network_charges_ntok, st.operator_surplus_ntok, st.minted_ntok, st.burned_ntok))


def _balances(out: DayResult, ledger: Ledger, sc, stats) -> None:
    balances = ledger.state.balances
    for p in sc.participants:
        s = stats[p.participant_id]
        out.balances.append((p.participant_id, "participant", p.location, p.has_pv,
                             balances.get(p.participant_id, 0), s[0], s[1], s[2], s[3], s[4]))
    for account in ("dso", "operator"):
        out.balances.append((account, account, "", False, balances.get(account, 0), 0, 0, 0, 0, 0))
    out.totals = {"minted_ntok": ledger.state.minted_ntok, "burned_ntok": ledger.state.burned_ntok,
                  "periodic_burned_ntok": ledger.state.burned_ntok - sum(r[14] for r in out.intervals),
                  "conservation_gap_ntok": ledger.state.conservation_gap_ntok(),
                  "ledger_entries": ledger.head_seq + 1, "checkpoints": len(ledger.store.checkpoints())}
