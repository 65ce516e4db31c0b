"""Portfolio parsing, and yield statistics against hand-computed quantiles, the settle rule, incremental
and persisted updates and the response to past dispatches — on the SQLite store and on the fake."""
from __future__ import annotations

import re

import pytest

from market.vpp.portfolio import Portfolio, PortfolioError
from market.vpp.sqlite_store import SqliteYieldStore
from market.vpp.store import DispatchRecord, FakeYieldStore
from market.vpp.yield_stats import (TelemetryError, YieldStats, hours_of, read_rounds_csv,
                                    read_timeseries_csv)
from tests.market.vpp.cases import HOUR_MS, TIERS, contract, portfolio, rows

H17 = 17 * HOUR_MS           # 17:00 UTC on 1970-01-01


@pytest.fixture(params=["sqlite", "fake"])
def store(request):
    return SqliteYieldStore(":memory:") if request.param == "sqlite" else FakeYieldStore()


def test_portfolio_holdings_and_contract_arithmetic():
    p = portfolio(hours=3.5, events=2)
    assert p.tiers == TIERS and p.sheddable_tiers == ("green", "yellow") and p.black == "black"
    assert p.locations() == ["2.1", "3.1"]
    h = p.holding("2.1", "green")
    assert (h.devices, h.kw) == (50, 100.0)
    assert h.contract.max_intervals_per_day(1.0) == 3 and h.contract.max_intervals_per_day(0.25) == 14
    assert h.contract.daily_energy_limit_kwh(100.0) == 350.0
    assert p.kw("2.1") == 180.0
    assert p.holding("2.1", "black").contract is None


@pytest.mark.parametrize("change, field", [
    (lambda d: d["holdings"][1].update(kw=-1), "holdings[1].kw"),
    (lambda d: d["holdings"][0].update(location="67 1"), "holdings[0].location"),
    (lambda d: d["holdings"][0].update(tier="purple"), "holdings[0].tier"),
    (lambda d: d["contracts"]["green"].pop("min_notice_min"), "contracts.green.min_notice_min"),
    (lambda d: d["contracts"].update(black=contract()), "contracts.black"),
    (lambda d: d["contracts"]["green"].update(max_curtailment_h_per_day=25), "contracts.green.max_curtailment_h_per_day"),
])
def test_portfolio_errors_name_the_field(change, field):
    doc = {"tiers": list(TIERS), "contracts": {"green": contract(), "yellow": contract()},
           "holdings": [{"location": "2.1", "tier": "green", "devices": 1, "kw": 1.0},
                        {"location": "2.1", "tier": "yellow", "devices": 1, "kw": 1.0}]}
    change(doc)
    with pytest.raises(PortfolioError, match="^" + re.escape(field)):
        Portfolio.from_dict(doc)


def test_quantile_and_mean_by_hand(store):
    """Five 60-s buckets of green at 10, 20, 30, 40, 50 kW (4 rows each) in hour 17: P90 of
    availability = the 10 % quantile = 10 + 0.4·(20 − 10) = 14 (numpy's linear rule: position
    0.1·(5 − 1) = 0.4); P50 = 30; mean 30. Other hours have no samples."""
    stats = YieldStats(store, TIERS)
    for b, kw in enumerate([30, 10, 50, 20, 40]):
        stats.ingest(rows("2.1", H17 + b * 60_000, 4, 15_000, (kw, 5.0, 2.0)))
    assert stats.available_kw("2.1", "green", [17], 0.9) == pytest.approx(14.0)
    assert stats.available_kw("2.1", "green", [17], 0.5) == pytest.approx(30.0)
    assert stats.expected_kw("2.1", "green", [17]) == pytest.approx(30.0)
    assert stats.available_kw("2.1", "green", [16], 0.9) is None
    assert stats.expected_kw("2.1", "black", hours_of(H17, H17 + HOUR_MS)) == pytest.approx(2.0)


def test_shed_rounds_and_the_settle_time_are_left_out(store):
    """Green shed at 100 s (p_off > 0): green samples from 100 s to 100 + 181 s are not availability;
    yellow and black are unaffected. Rows every 10 s from 0 to 590 s."""
    stats = YieldStats(store, TIERS, bucket_s=600.0)
    data = rows("2.1", H17, 60, 10_000, lambda i: (40.0 if i < 10 or i >= 29 else 1.0, 7.0, 3.0))
    data[10] = rows("2.1", H17 + 100_000, 1, 1, (30.0, 7.0, 3.0), (True, False, False))[0]
    counted = stats.ingest(data)
    green_rows = [r for i, r in enumerate(data) if i < 10 or r.t_ms - (H17 + 100_000) >= 181_000]
    assert counted == len(green_rows) + 60 + 60
    assert stats.expected_kw("2.1", "green", [17]) == pytest.approx(40.0)   # the 1-kW rows were all in the window
    assert stats.expected_kw("2.1", "yellow", [17]) == pytest.approx(7.0)
    assert store.last_shed_ms("2.1", "green") == H17 + 100_000


def test_telemetry_in_pieces_equals_telemetry_at_once(store):
    data = rows("3.1", H17, 40, 7_000, lambda i: (i % 7, 2.0 * (i % 3), 1.0))
    whole = YieldStats(FakeYieldStore(), TIERS)
    whole.ingest(data)
    pieces = YieldStats(store, TIERS)
    pieces.ingest(data[:13])
    pieces.ingest(data[13:])                 # a 60-s bucket straddles the two calls
    for tier in TIERS:
        assert list(pieces.samples_kw("3.1", tier, [17])) == pytest.approx(list(whole.samples_kw("3.1", tier, [17])))


def test_sqlite_store_persists(tmp_path):
    path = tmp_path / "vpp.db"
    stats = YieldStats(SqliteYieldStore(path), TIERS)
    stats.ingest(rows("2.1", H17, 10, 6_000, (12.0, 3.0, 1.0)))
    stats.record_dispatch(DispatchRecord("2.1", H17 + HOUR_MS, H17 + 2 * HOUR_MS, 16.0, 10.0))
    stats.store.close()
    again = YieldStats(SqliteYieldStore(path), TIERS)
    assert again.expected_kw("2.1", "green", [17]) == pytest.approx(12.0)
    assert [d.goal_kw for d in again.store.dispatches()] == [10.0]


def test_response_ratio_from_dispatched_intervals(store):
    """Two dispatches: 100 → 70 kW for 1 h, delivered enabled 76 (24 of 30); 100 → 90 for 2 h, delivered 90
    (10 of 10). Ratio = (24·1 + 10·2) / (30·1 + 10·2) = 44/50 = 0.88."""
    stats = YieldStats(store, TIERS)
    stats.record_dispatch(DispatchRecord("2.1", H17, H17 + HOUR_MS, 100.0, 70.0))
    stats.record_dispatch(DispatchRecord("2.1", H17 + HOUR_MS, H17 + 3 * HOUR_MS, 100.0, 90.0))
    shed = (True, False, False)
    stats.ingest(rows("2.1", H17, 6, 600_000, (50.0, 20.0, 6.0), shed))             # 76 kW enabled
    stats.ingest(rows("2.1", H17 + HOUR_MS, 12, 600_000, (64.0, 20.0, 6.0), shed))  # 90 kW enabled
    recs = store.dispatches("2.1")
    assert [r.delivered_kw for r in recs] == [pytest.approx(24.0), pytest.approx(10.0)]
    assert stats.response_ratio("2.1") == pytest.approx(0.88)
    assert stats.response_ratio("3.1") is None


def test_readers_for_rounds_csv_and_timeseries_csv(tmp_path):
    rounds = tmp_path / "rounds.csv"
    rounds.write_text("t_s,round_id,group,goal_kw,enabled_t0_kw,enabled_t1_kw,enabled_t2_kw,p_on_t0,p_on_t1,p_on_t2,"
                      "p_off_t0,p_off_t1,p_off_t2\n"
                      "2.0,1,671.1,50,10.5,5,2,0,0,1,0.25,0,0\n4.0,2,671.1,50,9,5,2,0,0,1,0,0,0\n")
    got = read_rounds_csv(rounds, TIERS, origin_ms=H17)
    assert [(r.location, r.t_ms, r.enabled_kw, r.shedding) for r in got] == [
        ("671.1", H17 + 2000, (10.5, 5.0, 2.0), (True, False, False)),
        ("671.1", H17 + 4000, (9.0, 5.0, 2.0), (False, False, False))]
    ts = tmp_path / "timeseries.csv"
    ts.write_text("t_s,group,goal_kw,enabled_green_kw,enabled_yellow_kw,enabled_black_kw,"
                  "p_on_green,p_off_green,p_on_yellow,p_off_yellow,p_on_black,p_off_black\n"
                  "0.0,g0,1,3,2,1,0,0,0,0.5,1,0\n")
    got = read_timeseries_csv(ts, TIERS, groups={"g0": "675.2"})
    assert got[0].location == "675.2" and got[0].enabled_kw == (3.0, 2.0, 1.0) and got[0].shedding == (False, True, False)
    with pytest.raises(TelemetryError, match="group 'g0' has no location"):
        read_timeseries_csv(ts, TIERS, groups={"g1": "675.2"})
    assert read_timeseries_csv(ts, TIERS)[0].location == "g0"      # a bus named g0 is a location id too
    with pytest.raises(TelemetryError, match="missing column"):
        read_rounds_csv(ts, TIERS)
