"""A cleared LEM's settlement appended to the signed settlement ledger (`market.settlement.ledger`).

Accounts: every party of the settlement (participants, `fixed_load@<node>`, `iso`, `unserved_energy`),
`lem:pool` (the market operator's clearing account) and `dso`. Per interval t (ts = start + t·Δt):

    meter reading   each party with energy: export_wh / import_wh = round(|p|·Δt·1000), signed by the
                    party's meter key (seed-derived, registered on first use)
    seller, π ≥ 0   mint against its reading: qty_wh × price (integer uUSD/kWh) — tokens only for
                    verified delivery
    buyer, π ≥ 0    transfer buyer → lem:pool, qty_wh × price
    π < 0           the other way round: a seller pays the pool, the pool pays a buyer
    bilateral       its network charge, transfer bilateral → lem:pool (or back), no reading
    DSO rents       transfer lem:pool → dso (congestion, loss, voltage; negative: back)
    close           burn lem:pool the interval's minted tokens ("grid_purchase": the energy the
                    buyers bought is retired)

What is left in `lem:pool` after an interval is the rounding of Wh, prices and rents to integers: the
settlement's balance identity, checked on the ledger (`AppendReport.pool_residual_ntok`). A k-of-n
checkpoint closes the append, so `colorgrid ledger verify` checks the chain, signatures, readings,
tokens and the checkpoint. The ledger's credit limit lets buyers carry the bill they owe.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from market.settlement.errors import SettlementError as LedgerRuleError
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, WitnessValidator, sign_reading
from market.settlement.sqlite_store import SQLiteStore
from market.settlement.units import price_uusd_per_kwh_from_usd_per_mwh

POOL, DSO = "lem:pool", "dso"
VALIDATORS = ("validator0", "validator1", "validator2")
THRESHOLD_K = 2
CREDIT_LIMIT_NTOK = 10 ** 18
NTOK_PER_USD = 10 ** 9
REASON = "lem_settlement"


@dataclass
class AppendReport:
    path: str
    created: bool
    entries: int
    first_seq: int
    last_seq: int
    checkpoint_period: int
    minted_ntok: int
    pool_residual_ntok: int        # rounding left in lem:pool by this append (the identity on the ledger)
    rounding_bound_ntok: int       # Σ |integer amount − exact amount| over the booked rows: |residual| ≤ it
    operator_public_hex: str


def keys(seed: int) -> tuple[KeyPair, list[KeyPair]]:
    return KeyPair.derive(seed, "lem-operator"), [KeyPair.derive(seed, f"lem-{v}") for v in VALIDATORS]


def open_ledger(path: str | Path, seed: int, ledger_id: str) -> tuple[Ledger, bool]:
    """The ledger at `path` (created with a genesis if new); its operator must be this seed's."""
    operator, validators = keys(seed)
    store = SQLiteStore(str(path))
    if store.count():
        ledger = Ledger(store, operator)
        st = ledger.state
        if st.operator_id is None or st.registry.public_hex(st.operator_id) != operator.public_hex:
            raise LedgerRuleError(f"{path}: the ledger's operator is not the key of seed {seed} (use its --seed)")
        return ledger, False
    return Ledger.create(store, operator, [(v.key_id, v.public_hex) for v in validators], THRESHOLD_K, ledger_id,
                         0, CREDIT_LIMIT_NTOK), True


def _register(ledger: Ledger, seed: int, party: str, ts_ms: int) -> KeyPair:
    meter = KeyPair.derive(seed, f"lem-meter:{party}")
    if meter.key_id not in ledger.state.registry:
        ledger.register_key(meter.key_id, "meter", meter.public_hex, party, ts_ms)
    return meter


def _ntok(usd: float) -> int:
    return int(round(usd * NTOK_PER_USD))


def append_settlement(path: str | Path, settlement, interval_h: float, seed: int = 0, start_ts_ms: int = 0,
                      ledger_id: str = "lem") -> AppendReport:
    """Append `settlement` (a `settlement.Settlement`) interval by interval (module docstring), then a
    checkpoint. Reading intervals are counted from the epoch in units of Δt, so a later day appends
    cleanly and the same day twice is refused (duplicate readings)."""
    ledger, created = open_ledger(path, seed, ledger_id)
    _, validators = keys(seed)
    step_ms = int(round(interval_h * 3_600_000))
    by_t: dict[int, list] = {}
    for r in settlement.rows:
        by_t.setdefault(r.interval, []).append(r)
    first = ledger.head_seq + 1
    pool0 = ledger.state.balances.get(POOL, 0)
    minted_total, rounding = 0, 0.0
    with ledger.batch():
        for t in sorted(by_t):
            ts = start_ts_ms + t * step_ms
            reading_interval = ts // step_ms
            minted = 0
            for r in by_t[t]:
                got, booked = _book(ledger, seed, r, interval_h, ts, reading_interval)
                minted += got
                rounding += abs(booked - abs(r.amount_usd) * NTOK_PER_USD)
            if minted:
                ledger.burn(POOL, minted, "grid_purchase", ts, ref=f"interval {reading_interval}")
            minted_total += minted
    period = (ledger.store.checkpoints()[-1].period + 1) if ledger.store.checkpoints() else 1
    ledger.checkpoint(period, [WitnessValidator(v) for v in validators])
    return AppendReport(str(path), created, ledger.head_seq - first + 1, first, ledger.head_seq, period, minted_total,
                        ledger.state.balances.get(POOL, 0) - pool0, int(rounding) + 1, ledger.operator.public_hex)


def _book(ledger: Ledger, seed: int, r, interval_h: float, ts: int, reading_interval: int) -> tuple[int, int]:
    """Entries of one settlement row; returns (ntok minted, ntok booked)."""
    ref = f"{r.party} interval {reading_interval}"
    if r.kind == "dso" or r.kind == "bilateral":
        amount = _ntok(r.amount_usd)
        account = DSO if r.kind == "dso" else r.party   # the DSO's three rents to one account
        src, dst = (POOL, account) if amount > 0 else (account, POOL)
        if amount:
            ledger.transfer(src, dst, abs(amount), REASON, ts, ref=ref)
        return 0, abs(amount)
    wh = int(round(abs(r.p_kw) * interval_h * 1000.0))
    if wh == 0:
        return 0, 0
    meter = _register(ledger, seed, r.party, ts)
    export = wh if r.p_kw > 0 else 0
    reading = {"meter_id": meter.key_id, "participant_id": r.party, "interval": int(reading_interval),
               "export_wh": export, "import_wh": wh - export, "ts_ms": int(ts)}
    seq = ledger.record_meter_reading(reading, sign_reading(reading, meter))
    price = price_uusd_per_kwh_from_usd_per_mwh(abs(r.price_usd_per_mwh), f"{r.party} price")
    amount = wh * price
    if amount == 0:
        return 0, 0
    seller, positive = r.p_kw > 0, r.price_usd_per_mwh > 0
    if seller and positive:
        ledger.mint_delivery(r.party, seq, wh, price, ts, ref=ref)
        return amount, amount
    paid_by_party = seller != positive   # a buyer at a positive price, a seller at a negative one
    src, dst = (r.party, POOL) if paid_by_party else (POOL, r.party)
    ledger.transfer(src, dst, amount, REASON, ts, ref=ref)
    return 0, amount
