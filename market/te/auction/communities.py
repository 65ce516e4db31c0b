"""N P2P communities, each settling on its own sidechain ledger, trading with each other through
LEM-to-LEM exchanges, and a main chain recording every community's checkpoints.

Community c is the simulated day of `simulation.run_day` with seed `seed x 1000 + c` and ledger id
`community-<c>`.  Per interval, all communities in lockstep:

  1. each community clears its own orders (`SimConfig.mechanism`, grid of last resort included);
  2. exchanges: for every pair (i, j), i < j, the residual asks of i meet the residual bids of j in
     a uniform-price call auction capped at `capacity_wh` (`exchange.clear_exchange`), then the
     residual asks of j meet those of i the same way;
  3. meters report; each seller's export pays its local trades first (in trade order, as
     `settle.settle_interval` does), then its exchange trades; what it does not deliver is not paid;
  4. settlement on each sidechain, in one batch per community: the local interval exactly as in
     `run_day` with the exchanged Wh taken out of the readings; on the exporting chain the
     community's account for the importer, `lem:c<j>`, pays the sellers their verified delivered Wh
     (`transfer` reason "trade", checked against their signed readings) and the `exchange` export
     credits it back (clearing account `chain:community-<j>` debited); on the importing chain the
     buyers pay `lem:c<i>` for what was delivered to them;
  5. then the import halves (`chains.settle_exchange_import`, referencing each export's seq and
     hash) move `lem:c<i>`'s receipts to the clearing account `chain:community-<i>`;
  6. every `checkpoint_every` intervals each sidechain is checkpointed, the main chain records the
     new checkpoints and is checkpointed itself.

Exchanges pay no network charge inside the communities (the interface tariff is not modelled).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from market.settlement.chains import record_checkpoints, register_sidechain, settle_exchange_import
from market.settlement.keys import KeyPair, KeyRegistry
from market.settlement.ledger import Ledger, WitnessValidator, sign_reading
from market.settlement.store import LedgerStore
from market.te.auction.call_auction import AuctionConfig
from market.te.auction.charges import DlmpDifferenceCharge, NoCharge
from market.te.auction.errors import TeError
from market.te.auction.exchange import Interface, clear_exchange, residual_orders
from market.te.auction.interval import GRID, GridOfLastResort, Trade
from market.te.auction.model import BUY, SELL
from market.te.auction.prices import FlatTariff
from market.te.auction.scenario import PCC, build_scenario, participant_keys, synthetic_dlmps
from market.te.auction.settle import Reading, SettlementPolicy, settle_interval
from market.te.auction.simulation import DAY_START_MS, VALIDATORS, SimConfig, _clear, _orders, _setup_ledger

EXCHANGE_COLUMNS = ("interval", "exchange_id", "exporter", "importer", "traded_wh", "delivered_wh",
                    "price_uusd_per_kwh", "amount_ntok", "export_seq", "import_seq")


def community_id(c: int) -> str:
    return f"community-{c}"


@dataclass
class CommunitiesResult:
    exchanges: list[tuple] = field(default_factory=list)   # see EXCHANGE_COLUMNS
    ledgers: list[Ledger] = field(default_factory=list)
    main: Ledger | None = None
    traded_wh: list[int] = field(default_factory=list)     # per community: local P2P + grid trades


class _Community:
    def __init__(self, c: int, cfg: SimConfig, store: LedgerStore) -> None:
        self.c, self.cfg = c, replace(cfg, seed=cfg.seed * 1000 + c)
        self.sc = build_scenario(cfg.participants, cfg.intervals, self.cfg.seed, cfg.pv_share)
        self.pkeys, self.mkeys = participant_keys(self.cfg.seed, self.sc.participants)
        self.registry = KeyRegistry()
        for p in self.sc.participants:
            self.registry.register(p.key_id, "participant", self.pkeys[p.participant_id].public_hex, p.participant_id)
        self.ledger, self.validators, _ = _setup_ledger(store, self.cfg, self.sc, self.pkeys, self.mkeys,
                                                        community_id(c))
        self.location_of = {p.participant_id: p.location for p in self.sc.participants}
        self.location_of[GRID] = PCC
        self.prefix = f"c{c}/"


def _relabel(orders, prefix: str):
    return [replace(o, order_id=prefix + o.order_id, participant_id=prefix + o.participant_id) for o in orders]


def run_communities(cfg: SimConfig, n: int, stores: list[LedgerStore], main_store: LedgerStore,
                    capacity_wh: int = 50_000) -> CommunitiesResult:
    """Simulate `n` communities on `stores` (one each) and the main chain on `main_store`."""
    if n < 2 or len(stores) != n:
        raise TeError(f"communities: need n >= 2 and one store per community, got n={n}, {len(stores)} stores")
    if capacity_wh < 0:
        raise TeError("communities: capacity_wh must be >= 0")
    comms = [_Community(c, cfg, stores[c]) for c in range(n)]
    main_op = KeyPair.derive(cfg.seed, "main:operator")
    main_vals = [KeyPair.derive(cfg.seed, f"main:{v}") for v in VALIDATORS]
    main = Ledger.create(main_store, main_op, [(v.key_id, v.public_hex) for v in main_vals], cfg.threshold_k,
                         f"colorgrid-te-main-seed{cfg.seed}", DAY_START_MS)
    main_witnesses = [WitnessValidator(v) for v in main_vals]
    with main.batch():
        for cm in comms:
            register_sidechain(main, cm.ledger, DAY_START_MS)
    prices = synthetic_dlmps(cfg.intervals)
    charge = DlmpDifferenceCharge(prices) if cfg.charges == "dlmp" else NoCharge()
    grid = GridOfLastResort(FlatTariff(cfg.grid_sell_usd_per_mwh), FlatTariff(cfg.grid_buy_usd_per_mwh), PCC)
    auction = AuctionConfig(cfg.k_num, cfg.k_den, cfg.tie_break)
    policy = SettlementPolicy(cfg.penalty_uusd_per_kwh)
    out = CommunitiesResult(ledgers=[cm.ledger for cm in comms], main=main, traded_wh=[0] * n)
    interval_ms = 86_400_000 // cfg.intervals
    for t in range(cfg.intervals):
        ts_ms = DAY_START_MS + t * interval_ms
        grid_sell, grid_buy = grid.prices(t)
        local, residual = [], []
        for cm in comms:  # 1. local clearing
            orders = _orders(t, cm.sc, cm.cfg, grid_sell, grid_buy, cm.pkeys, cm.registry)
            trades, fills, _ = _clear(t, orders, cm.cfg, grid)
            local.append(trades)
            out.traded_wh[cm.c] += sum(tr.qty_wh for tr in trades)
            residual.append(_relabel(residual_orders(orders, fills), cm.prefix))
        cross: dict[tuple[int, int], list[Trade]] = {}  # 2. exchanges, (exporter, importer) -> trades
        for i in range(n):
            for j in range(i + 1, n):
                for a, b in ((i, j), (j, i)):
                    asks = [o for o in residual[a] if o.side == SELL]
                    bids = [o for o in residual[b] if o.side == BUY]
                    res = clear_exchange(t, asks, bids, Interface(community_id(a), community_id(b), capacity_wh),
                                         auction)
                    if res.exchange_trades:
                        cross[(a, b)] = res.exchange_trades
                        filled: dict[str, int] = {}
                        for tr in res.exchange_trades:
                            filled[tr.sell_order_id] = filled.get(tr.sell_order_id, 0) + tr.qty_wh
                            filled[tr.buy_order_id] = filled.get(tr.buy_order_id, 0) + tr.qty_wh
                        residual[a], residual[b] = residual_orders(residual[a], filled), residual_orders(residual[b], filled)
        delivered = _deliveries(comms, t, local, cross)  # 3. what the meters allow
        exports = _settle_phase1(comms, t, ts_ms, local, cross, delivered, charge, grid_sell, grid_buy, policy)
        for (a, b), (xid, qty, price, export_seq) in sorted(exports.items()):  # 5. import halves
            imp = comms[b].ledger
            import_seq = settle_exchange_import(comms[a].ledger.store, imp, xid, f"lem:c{a}", ts_ms, export_seq)
            traded = sum(tr.qty_wh for tr in cross[(a, b)])
            out.exchanges.append((t, xid, community_id(a), community_id(b), traded, qty, price, qty * price,
                                  export_seq, import_seq))
        if (t + 1) % cfg.checkpoint_every == 0 or t == cfg.intervals - 1:  # 6. checkpoints
            period = (t + 1 + cfg.checkpoint_every - 1) // cfg.checkpoint_every
            for cm in comms:
                if t == cfg.intervals - 1:
                    cm.ledger.burn_periodic(DAY_START_MS + cfg.intervals * interval_ms)
                cm.ledger.checkpoint(period, cm.validators)
            with main.batch():
                for cm in comms:
                    record_checkpoints(main, cm.ledger, ts_ms)
            main.checkpoint(period, main_witnesses)
    return out


def _deliveries(comms, t, local, cross) -> dict[tuple[int, int], list[int]]:
    """Delivered Wh of every exchange trade: each seller's metered export pays its local trades first
    (in trade order, the rule of `settle_interval`), then its exchange trades in order."""
    out = {}
    for cm in comms:
        left = {}
        for i, p in enumerate(cm.sc.participants):
            left[p.participant_id] = max(int(cm.sc.actual_net_wh[i, t]), 0)
        for tr in local[cm.c]:
            if tr.seller_id != GRID:
                left[tr.seller_id] -= min(tr.qty_wh, left[tr.seller_id])
        for (a, b) in sorted(cross):
            if a != cm.c:
                continue
            got = []
            for tr in cross[(a, b)]:
                seller = tr.seller_id[len(cm.prefix):]
                d = min(tr.qty_wh, left[seller])
                left[seller] -= d
                got.append(d)
            out[(a, b)] = got
    return out


def _settle_phase1(comms, t, ts_ms, local, cross, delivered, charge, grid_sell, grid_buy, policy) -> dict:
    """4. One batch per community: readings, local settlement, exchange payments, export halves."""
    exports = {}
    for cm in comms:
        out_wh, in_wh = {}, {}
        for (a, b), trades in cross.items():
            for tr, d in zip(trades, delivered[(a, b)]):
                if a == cm.c:
                    s = tr.seller_id[len(cm.prefix):]
                    out_wh[s] = out_wh.get(s, 0) + d
                if b == cm.c:
                    buyer = tr.buyer_id[len(cm.prefix):]
                    in_wh[buyer] = in_wh.get(buyer, 0) + d
        ledger = cm.ledger
        with ledger.batch():
            ledger.burn_periodic(ts_ms)
            readings, seqs = {}, {}
            for i, p in enumerate(cm.sc.participants):
                pid, net = p.participant_id, int(cm.sc.actual_net_wh[i, t])
                reading = {"meter_id": cm.mkeys[pid].key_id, "participant_id": pid, "interval": t,
                           "export_wh": max(net, 0), "import_wh": max(-net, 0), "ts_ms": ts_ms}
                seqs[pid] = ledger.record_meter_reading(reading, sign_reading(reading, cm.mkeys[pid]))
                readings[pid] = Reading(seqs[pid], max(net, 0) - out_wh.get(pid, 0),
                                        max(max(-net, 0) - in_wh.get(pid, 0), 0))
            settle_interval(ledger, local[cm.c], readings, cm.location_of, charge, grid_sell, grid_buy, ts_ms, policy)
            for (a, b) in sorted(cross):
                trades = cross[(a, b)]
                if a == cm.c:  # exporter: lem:c<b> pays the sellers for verified delivery
                    pseudo = [Trade(t, f"lem:c{b}", tr.seller_id[len(cm.prefix):], tr.buy_order_id, tr.sell_order_id,
                                    tr.qty_wh, tr.buyer_price_uusd_per_kwh, tr.seller_price_uusd_per_kwh)
                              for tr in trades]
                    locs = dict(cm.location_of, **{f"lem:c{b}": PCC})
                    pair_out: dict[str, int] = {}  # this pair's share of each seller's exchanged export
                    for tr, d in zip(pseudo, delivered[(a, b)]):
                        pair_out[tr.seller_id] = pair_out.get(tr.seller_id, 0) + d
                    sellers = {s: Reading(seqs[s], wh, 0) for s, wh in pair_out.items()}
                    st = settle_interval(ledger, pseudo, sellers, locs, NoCharge(), grid_sell, grid_buy, ts_ms, policy)
                    if st.delivered_wh != delivered[(a, b)]:
                        raise TeError(f"interval {t}: exchange c{a}->c{b} delivered {st.delivered_wh}, "
                                      f"expected {delivered[(a, b)]}")
                    qty, price = sum(st.delivered_wh), trades[0].seller_price_uusd_per_kwh
                    if qty and price:
                        xid = f"{t:03d}:c{a}->c{b}"
                        seq = ledger.append("exchange", {
                            "exchange_id": xid, "direction": "export", "counter_chain": community_id(b),
                            "account": f"lem:c{b}", "qty_wh": qty, "price_uusd_per_kwh": price,
                            "amount_ntok": qty * price}, ts_ms)
                        exports[(a, b)] = (xid, qty, price, seq)
                if b == cm.c:  # importer: the buyers pay lem:c<a> for what was delivered to them
                    for tr, d in zip(trades, delivered[(a, b)]):
                        if d and tr.buyer_price_uusd_per_kwh:
                            ledger.transfer(tr.buyer_id[len(cm.prefix):], f"lem:c{a}", d * tr.buyer_price_uusd_per_kwh,
                                            "exchange", ts_ms, f"{t:03d}:c{a}->c{b}")
    return exports
