"""Supply curves: a hand-computed case (prices, P90 quantities, contract windows), the interval choice
against brute force, the LEM export validated by the LEM's schema and cleared by the LEM itself."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from market.lem.network_data import IntervalNetwork, NetworkData
from market.lem.pricing import clear_dam
from market.vpp.dispatch import cleared_from_schedule, plan_dispatch
from market.vpp.store import FakeYieldStore
from market.vpp.supply import (TIE_USD_PER_MWH, build_supply, choose_intervals, feeder_supply, lem_offers,
                               offer_id, with_vpp_offers)
from market.vpp.yield_stats import YieldStats
from tests.market.vpp.cases import HOUR_MS, TIERS, portfolio, rows

STARTS = [h * HOUR_MS for h in range(4)]          # 00:00 .. 03:00 UTC, 1-h intervals


def fleet_stats(green_by_bucket=(40.0, 50.0, 60.0, 70.0, 80.0), yellow=30.0, black=10.0) -> YieldStats:
    """Per location and hour 0..3 five 60-s buckets: green as given, yellow and black constant."""
    stats = YieldStats(FakeYieldStore(), TIERS)
    for loc in ("2.1", "3.1"):
        for h in range(4):
            for b, g in enumerate(green_by_bucket):
                stats.ingest(rows(loc, h * HOUR_MS + b * 60_000, 2, 30_000, (g, yellow, black)))
    return stats


def test_hand_computed_curve():
    """green: 0.05 USD/kWh + 2 USD/event over 1 h of 100 kW = 50 + 20 = 70 USD/MWh; yellow 0.04 USD/kWh
    = 40, lifted to 70 + tie. P90 of green = 10 % quantile of 40..80 = 40 + 0.4·10 = 44 kW (< 100 kW
    held); yellow 30 (< 60 held). Green may curtail 2 h in one event: the two consecutive intervals of
    highest priority (ISO price) are 1 and 2 (90 + 80 > 80 + 85); yellow (2 h, 1 event) only where
    green is offered: 1 and 2 as well."""
    p = portfolio(hours=2.0, events=1, usd_event=2.0)
    iso = [30.0, 90.0, 80.0, 85.0]
    c = build_supply(p, fleet_stats(), STARTS, 1.0, confidence=0.9, priority=iso)
    assert c.prices[("2.1", "green")] == pytest.approx(70.0)
    assert c.prices[("2.1", "yellow")] == pytest.approx(70.0 + TIE_USD_PER_MWH)
    assert c.offered[("2.1", "green")] == (1, 2) and c.offered[("2.1", "yellow")] == (1, 2)
    assert [c.quantity_kw("2.1", "green", t) for t in range(4)] == pytest.approx([0, 44.0, 44.0, 0])
    assert [c.quantity_kw("2.1", "yellow", t) for t in range(4)] == pytest.approx([0, 30.0, 30.0, 0])
    curve = c.curves[("2.1", 1)]
    assert [s.tier for s in curve.steps] == ["green", "yellow"]          # black never offered
    assert curve.baseline_kw == pytest.approx(60.0 + 30.0 + 10.0) and curve.black_kw == pytest.approx(10.0)
    assert c.daily_energy_limit_kwh[("2.1", "green")] == pytest.approx(200.0)
    assert c.daily_energy_limit_kwh[("2.1", "yellow")] == pytest.approx(120.0)
    # the feeder's curve for the ISO: both locations merged by price
    assert feeder_supply(c)[1] == (pytest.approx((70.0, 88.0)), pytest.approx((70.0 + TIE_USD_PER_MWH, 60.0)))

    assert feeder_supply(c)[0] == ()


def test_notice_and_missing_statistics():
    p = portfolio(hours=4.0, events=4, notice=90.0)
    c = build_supply(p, fleet_stats(), STARTS + [4 * HOUR_MS], 1.0, dispatch_at_ms=0)
    # green needs 90 min notice from t = 0: intervals 0 and 1 (starting 0 and 60 min) are out
    assert c.offered[("2.1", "green")] == (2, 3)
    assert ("2.1", 4) not in c.curves and any("2.1 interval 4" in m for m in c.missing)


@pytest.mark.parametrize("seed", range(12))
def test_interval_choice_is_the_best_feasible_set(seed):
    rng = np.random.default_rng(seed)
    n = 7
    prio = rng.integers(0, 10, n).astype(float)
    ok = rng.random(n) < 0.8
    max_n, max_e = int(rng.integers(0, 5)), int(rng.integers(0, 3))
    got = choose_intervals(prio, ok, max_n, max_e)

    def events(s):
        return sum(1 for i in s if i - 1 not in s)

    best = max(sum(prio[i] for i in s) for r in range(n + 1) for s in itertools.combinations(range(n), r)
               if all(ok[i] for i in s) and len(s) <= max_n and events(set(s)) <= max_e)
    assert all(ok[i] for i in got) and len(got) <= max_n and events(set(got)) <= max_e
    assert sum(prio[i] for i in got) == pytest.approx(best)


def three_bus(intervals: int) -> NetworkData:
    """Substation 1 — bus 2 — bus 3, single phase, lossless, no binding limits (PTDFs by hand)."""
    ptdf = np.array([[-1.0, -1.0], [0.0, -1.0]])
    d = np.array([150.0, 150.0])
    iv = IntervalNetwork(["2.1", "3.1"], d, -d, float(d.sum()), np.zeros(2), ["line.12.1", "line.23.1"], ptdf,
                         ptdf @ -d, np.array([1e6, 1e6]), [], np.zeros((0, 2)), np.zeros(0), np.zeros(0),
                         np.zeros(0))
    return NetworkData("1", [iv] * intervals, {"2": ["2.1"], "3": ["3.1"]})


def test_lem_offers_validate_and_clear_in_the_lem():
    """The VPP's offers in the LEM schema, cleared by the LEM's own clearing (HiGHS): where the ISO price
    (90, 80, 85) is above green's 70 USD/MWh the VPP's offered kW is taken in full, not at 30."""
    p = portfolio(hours=3.0, events=1, usd_event=2.0)
    iso = [30.0, 90.0, 80.0, 85.0]
    c = build_supply(p, fleet_stats(), STARTS, 1.0, priority=iso)
    offers = lem_offers(c)
    assert {o["id"] for o in offers} == {offer_id(loc, t) for loc in ("2.1", "3.1") for t in ("green", "yellow")}
    market = with_vpp_offers({"intervals": 4, "iso": {"import_price_usd_per_mwh": iso}}, c)
    clearing = clear_dam(market, three_bus(4))
    cleared = cleared_from_schedule(clearing.schedule_kw)
    for loc in ("2.1", "3.1"):
        for t in range(4):
            offered = sum(c.quantity_kw(loc, tier, t) for tier in ("green", "yellow"))
            assert cleared[(loc, t)] == pytest.approx(offered if iso[t] > 70.0 + TIE_USD_PER_MWH else 0.0, abs=1e-6)
    assert cleared[("2.1", 1)] == pytest.approx(44.0 + 30.0)       # green P90 + yellow (its one hour)
    plan = plan_dispatch(cleared, c, p, issued_ms=-HOUR_MS)
    assert not plan.clipped
    assert plan.goal_kw("2.1", 1) == pytest.approx(100.0 - 74.0)
    with pytest.raises(Exception, match="intervals"):
        with_vpp_offers({"intervals": 3, "iso": {"import_price_usd_per_mwh": iso[:3]}}, c)


def test_max_shed_share_keeps_part_of_each_tier_back():
    """Green held 100 kW, available 44 (P90): 0.3 × 100 = 30 kW offered; yellow 60 held, 30 available:
    0.3 × 60 = 18. At 0.9 the availability binds (44, 30)."""
    p = portfolio(hours=4.0, events=4)
    c = build_supply(p, fleet_stats(), STARTS, 1.0, confidence=0.9, max_shed_share=0.3)
    assert c.quantity_kw("2.1", "green", 0) == pytest.approx(30.0) and c.quantity_kw("2.1", "yellow", 0) == pytest.approx(18.0)
    c = build_supply(p, fleet_stats(), STARTS, 1.0, confidence=0.9, max_shed_share=0.9)
    assert c.quantity_kw("2.1", "green", 0) == pytest.approx(44.0) and c.quantity_kw("2.1", "yellow", 0) == pytest.approx(30.0)
    with pytest.raises(Exception, match="max_shed_share"):
        build_supply(p, fleet_stats(), STARTS, 1.0, max_shed_share=0.0)
