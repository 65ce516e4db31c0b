"""Token policy across sidechains: mint on verified delivery, transfers, policy burns, the periodic
burn of genesis, and cross-chain exchanges.  A model kept by the test (its own balances and totals)
must equal every chain's ledger, each chain must conserve its tokens, the clearing accounts of every
pair must net to zero, and so all chains together circulate exactly what was minted minus burned."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.settlement.chains import check_conservation, check_exchange_pairs, settle_exchange, supply
from market.settlement.errors import LedgerError
from market.settlement.keys import KeyPair
from market.settlement.ledger import Ledger, sign_reading
from market.settlement.store import FakeLedgerStore
from market.settlement.verify import verify_ledger

CHAINS = ("lem-a", "lem-b", "lem-c")
PEOPLE = ("p1", "p2", "p3")
PERIOD_MS, RATE_PPM = 1_000, 25_000  # 2.5 % of every positive balance per second of simulated time


def new_chain(name: str, rate_ppm: int = RATE_PPM) -> Ledger:
    operator = KeyPair.derive(5, f"operator:{name}")
    validators = [KeyPair.derive(5, f"validator:{name}:{v}") for v in ("dso", "community")]
    ledger = Ledger.create(FakeLedgerStore(), operator, [(v.key_id, v.public_hex) for v in validators], 1, name,
                           credit_limit_ntok=10**15, periodic_burn={"period_ms": PERIOD_MS, "rate_ppm": rate_ppm,
                                                                    "exempt": ["dso"]})
    for p in PEOPLE:
        meter = KeyPair.derive(5, f"meter:{name}:{p}")
        ledger.register_key(meter.key_id, "meter", meter.public_hex, p, 0)
    return ledger


class Model:
    """What the test expects, computed without the ledger."""

    def __init__(self) -> None:
        self.balances = {c: {} for c in CHAINS}
        self.minted = {c: 0 for c in CHAINS}
        self.burned = {c: 0 for c in CHAINS}

    def add(self, chain: str, account: str, amount: int) -> None:
        self.balances[chain][account] = self.balances[chain].get(account, 0) + amount

    def periodic(self, chain: str) -> None:
        for account, balance in sorted(self.balances[chain].items()):
            amount = balance * RATE_PPM // 1_000_000
            if amount > 0 and account != "dso" and not account.startswith("chain:"):
                self.add(chain, account, -amount)
                self.burned[chain] += amount


ops = st.lists(st.one_of(
    st.tuples(st.just("deliver"), st.sampled_from(CHAINS), st.sampled_from(PEOPLE), st.integers(1, 5_000),
              st.integers(1, 300_000)),
    st.tuples(st.just("transfer"), st.sampled_from(CHAINS), st.sampled_from(PEOPLE + ("dso",)),
              st.sampled_from(PEOPLE + ("dso",)), st.integers(1, 10**8)),
    st.tuples(st.just("burn"), st.sampled_from(CHAINS), st.sampled_from(PEOPLE), st.integers(1, 10**8)),
    st.tuples(st.just("exchange"), st.sampled_from(CHAINS), st.sampled_from(CHAINS), st.integers(1, 5_000),
              st.integers(1, 300_000)),
    st.tuples(st.just("advance"), st.integers(1, 2_500))), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_supply_is_conserved_on_every_chain_and_across_them(operations):
    chains = {c: new_chain(c) for c in CHAINS}
    model, now, intervals, n = Model(), 0, {c: 0 for c in CHAINS}, 0
    for op in operations:
        kind, n = op[0], n + 1
        if kind == "advance":
            now += op[1]
            for c, ledger in chains.items():
                due = len(ledger.burn_periodic(now))
                for _ in range(due):
                    model.periodic(c)
        elif kind == "deliver":
            _, c, p, wh, price = op
            meter = KeyPair.derive(5, f"meter:{c}:{p}")
            reading = {"meter_id": meter.key_id, "participant_id": p, "interval": intervals[c], "export_wh": wh,
                       "import_wh": 0, "ts_ms": now}
            intervals[c] += 1
            seq = chains[c].record_meter_reading(reading, sign_reading(reading, meter))
            chains[c].mint_delivery(p, seq, wh, price, now)
            model.add(c, p, wh * price)
            model.minted[c] += wh * price
        elif kind == "transfer":
            _, c, src, dst, amount = op
            if src == dst:
                with pytest.raises(LedgerError, match="to itself"):
                    chains[c].transfer(src, dst, amount, "pay", now)
                continue
            chains[c].transfer(src, dst, amount, "pay", now)
            model.add(c, src, -amount)
            model.add(c, dst, amount)
        elif kind == "burn":
            _, c, p, amount = op
            chains[c].burn(p, amount, "grid_purchase", now)
            model.add(c, p, -amount)
            model.burned[c] += amount
        else:
            _, src, dst, wh, price = op
            if src == dst:
                continue
            settle_exchange(chains[src], chains[dst], f"x-{n}", f"lem:{src}", f"lem:{dst}", wh, price, now)
            model.add(src, f"lem:{src}", wh * price)
            model.add(src, f"chain:{dst}", -wh * price)
            model.add(dst, f"lem:{dst}", -wh * price)
            model.add(dst, f"chain:{src}", wh * price)
    stores = [chains[c].store for c in CHAINS]
    rows, problems = check_conservation(stores)
    assert problems == [] and check_exchange_pairs(stores) == []
    for c, row in zip(CHAINS, rows):
        rep = verify_ledger(chains[c].store)
        assert rep.ok, rep.describe()
        nonzero = {a: v for a, v in model.balances[c].items() if v}
        assert {a: v for a, v in chains[c].state.balances.items() if v} == nonzero
        assert (row["minted_ntok"], row["burned_ntok"]) == (model.minted[c], model.burned[c])
        assert (rep.minted_ntok, rep.burned_ntok) == (model.minted[c], model.burned[c])
    circulating = sum(r["circulating_ntok"] for r in rows)
    assert circulating == sum(model.minted.values()) - sum(model.burned.values())


def test_periodic_burn_cannot_be_skipped_forged_or_booked_early():
    ledger = new_chain("lem-a")
    meter = KeyPair.derive(5, "meter:lem-a:p1")
    reading = {"meter_id": meter.key_id, "participant_id": "p1", "interval": 0, "export_wh": 1_000, "import_wh": 0,
               "ts_ms": 0}
    ledger.mint_delivery("p1", ledger.record_meter_reading(reading, sign_reading(reading, meter)), 1_000, 40_000, 0)
    ledger.transfer("p1", "dso", 1_000_000, "network_charge", 10)
    with pytest.raises(LedgerError, match="before the period ends"):
        ledger.append("periodic_burn", {"period": 0, "burns": ledger.state.periodic_burns()}, 999)
    with pytest.raises(LedgerError, match="periodic burn of period 0 is due"):
        ledger.transfer("p1", "p2", 1, "pay", 1_000)  # the period ended: nothing else until the burn
    with pytest.raises(LedgerError, match="does not burn exactly 25000 ppm"):  # a selective burn
        ledger.append("periodic_burn", {"period": 0, "burns": [["p1", 1]]}, 1_000)
    with pytest.raises(LedgerError, match="expected period 0"):
        ledger.append("periodic_burn", {"period": 1, "burns": ledger.state.periodic_burns()}, 1_000)
    assert ledger.state.periodic_burns() == [["p1", 39_000_000 * 25_000 // 1_000_000]]  # dso exempt
    assert len(ledger.burn_periodic(3_500)) == 3  # periods 0, 1, 2 ended by 3.5 s
    ledger.transfer("p1", "p2", 1, "pay", 3_500)
    assert verify_ledger(ledger.store).ok
    assert supply(ledger.store)["periodic_burned_ntok"] == ledger.state.burned_ntok > 0


def test_a_ledger_that_skipped_its_periodic_burn_is_named_by_verify():
    ledger = new_chain("lem-a")
    ledger.state.burn_due_ms = None  # a malicious operator ignoring its own policy
    ledger.transfer("p1", "p2", 7, "pay", 5_000)
    rep = verify_ledger(ledger.store)
    assert not rep.ok and rep.bad_seq == ledger.head_seq and "periodic burn of period 0 is due" in rep.reason


def test_a_half_settled_exchange_breaks_the_cross_chain_supply_and_is_named():
    a, b = new_chain("lem-a"), new_chain("lem-b")
    a.append("exchange", {"exchange_id": "x-1", "direction": "export", "counter_chain": "lem-b", "account": "lem:a",
                          "qty_wh": 10, "price_uusd_per_kwh": 7, "amount_ntok": 70}, 0)
    _, problems = check_conservation([a.store, b.store])
    assert problems == ["chains 'lem-a' and 'lem-b': clearing accounts do not net to zero (lem-a holds -70 ntok "
                        "for lem-b, lem-b holds 0 for lem-a; an exchange is half-settled)"]
