"""Closed-loop checks: the delivery RMS by hand, contract use counted from what was planned and from
what the fleet actually shed, dispatch.csv round trip, and a contract the market would otherwise
exceed: curves bid under loose terms, cleared by the LEM in every interval, dispatched under the
contracts in force — the plan honours them and the check proves it (and catches the raw clearing)."""
from __future__ import annotations

import math

import pytest

from market.lem.pricing import clear_dam
from market.vpp.checks import (CheckError, DispatchRow, contract_uses, delivery_rms_pct, dispatch_columns,
                               read_dispatch_csv)
from market.vpp.dispatch import cleared_from_schedule, plan_dispatch
from market.vpp.supply import build_supply, with_vpp_offers
from tests.market.vpp.cases import HOUR_MS, portfolio
from tests.market.vpp.test_supply import STARTS, fleet_stats, three_bus


def row(loc, t, base, cleared, delivered, planned=(0.0, 0.0), shed=(0.0, 0.0)) -> DispatchRow:
    return DispatchRow(loc, t, t * HOUR_MS, base, cleared, cleared, base - cleared, delivered, planned, shed)


def test_delivery_rms_by_hand():
    """2.1: errors +3, −4 on a 100-kW baseline → √((9 + 16)/2) = 3.5355 %; 3.1: error 0, 0 on 50 kW;
    overall: √(25/4) / 75 = 3.3333 %."""
    rows = [row("2.1", 0, 100.0, 40.0, 43.0), row("2.1", 1, 100.0, 50.0, 46.0),
            row("3.1", 0, 50.0, 10.0, 10.0), row("3.1", 1, 50.0, 0.0, 0.0)]
    overall, by_loc = delivery_rms_pct(rows)
    assert by_loc["2.1"] == pytest.approx(100.0 * math.sqrt(12.5) / 100.0)
    assert by_loc["3.1"] == 0.0
    assert overall == pytest.approx(100.0 * 2.5 / 75.0)
    with pytest.raises(CheckError):
        delivery_rms_pct([])


def test_contract_use_counts_planned_and_actually_shed_intervals():
    """Green (2 h, 1 event): planned in 0 and 1 → 2 h, 1 event, ok. Yellow (2 h, 1 event) planned
    nowhere, but the fleet shed 5 kW of it (> 2 % of 60 kW) in 0 and 2 → 2 events: broken."""
    p = portfolio(locations=("2.1",), hours=2.0, events=1)
    rows = [row("2.1", 0, 180.0, 30.0, 30.0, planned=(30.0, 0.0), shed=(25.0, 5.0)),
            row("2.1", 1, 180.0, 30.0, 30.0, planned=(30.0, 0.0), shed=(30.0, 0.5)),   # 0.5 kW: noise
            row("2.1", 2, 180.0, 0.0, 5.0, shed=(0.0, 5.0)),
            row("2.1", 3, 180.0, 0.0, 0.0)]
    uses = {u.tier: u for u in contract_uses(rows, p, 1.0, issued_ms=-HOUR_MS)}
    assert uses["green"].intervals == (0, 1) and uses["green"].hours == 2.0 and uses["green"].events == 1
    assert uses["green"].ok and uses["green"].notice_min == pytest.approx(60.0)
    assert uses["yellow"].intervals == (0, 2) and uses["yellow"].events == 2 and not uses["yellow"].ok
    assert "2 events > 1" in uses["yellow"].why()
    late = {u.tier: u for u in contract_uses(rows, portfolio(locations=("2.1",), hours=2.0, events=1, notice=90.0),
                                             1.0, issued_ms=-HOUR_MS)}
    assert not late["green"].ok and "notice 60 min < 90 min" in late["green"].why()


def test_dispatch_csv_round_trip_and_bad_lines(tmp_path):
    rows = [row("2.1", 0, 100.0, 40.0, 43.0, planned=(40.0, 0.0), shed=(41.0, 2.0))]
    path = tmp_path / "dispatch.csv"
    path.write_text(",".join(dispatch_columns(("green", "yellow"))) + "\n"
                    + ",".join(str(c) for c in rows[0].cells()) + "\n")
    assert read_dispatch_csv(path, ("green", "yellow")) == rows
    path.write_text(path.read_text().replace("43.0", "x"))
    with pytest.raises(CheckError, match="line 2"):
        read_dispatch_csv(path, ("green", "yellow"))
    with pytest.raises(CheckError, match="red_planned_kw"):
        read_dispatch_csv(path, ("green", "yellow", "red"))


def test_a_contract_the_market_would_otherwise_exceed_is_honoured():
    """Green bid under 4 h / 4 events: the LEM (HiGHS) takes it in all four hours (ISO 90 > the
    offer); the contract in force allows 2 h in 1 event. The raw clearing would break it; the plan
    keeps green's first 2 consecutive hours (no reduction after: green sheds first) and the check
    of what it delivers passes."""
    loose = portfolio(hours=4.0, events=4)
    iso = [90.0, 90.0, 90.0, 90.0]
    curves = build_supply(loose, fleet_stats(), STARTS, 1.0, priority=iso)
    clearing = clear_dam(with_vpp_offers({"intervals": 4, "iso": {"import_price_usd_per_mwh": iso}}, curves),
                         three_bus(4))
    cleared = cleared_from_schedule(clearing.schedule_kw)
    assert all(cleared[("2.1", t)] > 40.0 for t in range(4))
    strict = portfolio(hours=2.0, events=1)

    def rows_of(plan_or_none):
        out = []
        for t in range(4):
            base = curves.curves[("2.1", t)].baseline_kw
            if plan_or_none is None:        # delivered as cleared, split in shed order
                parts = (min(cleared[("2.1", t)], 44.0), max(0.0, cleared[("2.1", t)] - 44.0))
                red = cleared[("2.1", t)]
            else:
                parts = tuple(plan_or_none.tier_kw.get(("2.1", tier, t), 0.0) for tier in ("green", "yellow"))
                red = plan_or_none.reduction_kw[("2.1", t)]
            out.append(DispatchRow("2.1", t, STARTS[t], base, cleared[("2.1", t)], red, base - red, red, parts, parts))
        return out

    raw = [u for u in contract_uses(rows_of(None), strict, 1.0) if not u.ok]
    assert [(u.tier, u.intervals) for u in raw] == [("green", (0, 1, 2, 3))]
    plan = plan_dispatch(cleared, curves, strict, issued_ms=-HOUR_MS)
    assert [plan.reduction_kw[("2.1", t)] for t in (2, 3)] == [0.0, 0.0] and plan.clipped
    uses = contract_uses(rows_of(plan), strict, 1.0, issued_ms=-HOUR_MS)
    assert all(u.ok for u in uses), [u.why() for u in uses if not u.ok]
    assert {u.tier: u.intervals for u in uses if u.location == "2.1"} == {"green": (0, 1), "yellow": (0, 1)}


def test_unplanned_shed_share():
    from market.vpp.checks import unplanned_shed_pct

    p = portfolio(locations=("2.1",), hours=2.0, events=1)
    rows = [row("2.1", 0, 180.0, 30.0, 30.0, planned=(30.0, 0.0), shed=(25.0, 5.0)),     # yellow 5 of 60 kW
            row("2.1", 1, 180.0, 0.0, 1.0, shed=(1.0, 0.0))]                          # green 1 of 100 kW
    assert unplanned_shed_pct(rows, p) == pytest.approx(100.0 * 5.0 / 60.0)
    assert unplanned_shed_pct(rows[1:], p) == pytest.approx(1.0)
