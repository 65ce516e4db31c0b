"""The dispatchable plant, closed: a simulated fleet's telemetry → yield statistics → supply curve →
a reduction cleared by hand → signed per-group dispatches (cloud's DispatchGoal) → the vectorized
fleet with three control groups delivers the cleared reduction in every interval, and its telemetry
gives the response ratio back. (The LEM's own clearing of these offers: test_supply.py.)"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from cloud.dispatch import DispatchGoal
from cloud.goals import ConstantGoal
from colorgrid.commands.simulate import timeseries_columns
from firmware_sim.scenario import ScenarioConfig, run_scenario
from market.vpp.dispatch import RenamedGroups, dispatch_payloads, dispatch_records, plan_dispatch
from market.vpp.portfolio import Portfolio
from market.vpp.sqlite_store import SqliteYieldStore
from market.vpp.supply import build_supply
from market.vpp.yield_stats import YieldStats, read_timeseries_csv
from tests.market.vpp.cases import TIERS, contract

LOCATIONS = {"g0": "632.1", "g1": "671.2", "g2": "675.3"}
INTERVAL_S = 300.0
WARMUP_S = 300.0
STARTS_MS = [int((WARMUP_S + i * INTERVAL_S) * 1000) for i in range(3)]
# cleared reduction, share of the location's baseline, per interval (group g2 reaches into yellow)
CLEARED_SHARE = {"632.1": (0.20, 0.35, 0.10), "671.2": (0.0, 0.25, 0.25), "675.3": (0.30, 0.50, 0.15)}
SETTLE_S = 60.0             # the first minute of an interval is not judged (the fleet moves there)
TOLERANCE_PCT = 1.0         # |mean delivered − cleared| per group·interval, % of the group's baseline (measured: ≤ 0.16 %)
KEY = b"v" * 32


def write_timeseries(res, path):
    cols = timeseries_columns(res)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(np.asarray(v).tolist() for v in cols.values())))


@pytest.fixture(scope="module")
def fleet():
    return ScenarioConfig(scenario="fairness", devices=3000, groups=3, base=1.0, amplitude=0.0,
                          warmup_s=0.0, duration_s=600.0, seed=5)


def test_cleared_reduction_is_delivered_per_group(fleet, tmp_path):
    # 1. telemetry of the undispatched fleet (base 1.0: nothing shed) → yield statistics (SQLite)
    quiet = run_scenario(fleet)
    write_timeseries(quiet, tmp_path / "timeseries.csv")
    stats = YieldStats(SqliteYieldStore(tmp_path / "vpp.db"), TIERS)
    stats.ingest(read_timeseries_csv(tmp_path / "timeseries.csv", TIERS, groups=LOCATIONS))
    tier_kw = quiet.group_enabled_tier_kw[-1]                     # (groups, tiers): constant loads
    holdings = [{"location": loc, "tier": tier, "devices": 1000, "kw": float(tier_kw[g, i])}
                for g, loc in enumerate(LOCATIONS.values()) for i, tier in enumerate(TIERS)]
    portfolio = Portfolio.from_dict({"tiers": list(TIERS), "holdings": holdings,
                                     "contracts": {"green": contract(hours=1.0, events=1),
                                                   "yellow": contract(hours=0.5, events=1, usd_kwh=0.08)}})
    # 2. supply curves for three 5-min intervals; P90 of constant loads = the tier's kW
    curves = build_supply(portfolio, stats, STARTS_MS, INTERVAL_S / 3600.0, confidence=0.9)
    for g, loc in enumerate(LOCATIONS.values()):
        assert curves.curves[(loc, 0)].baseline_kw == pytest.approx(float(tier_kw[g].sum()))
        assert curves.quantity_kw(loc, "green", 0) == pytest.approx(float(tier_kw[g, 0]))
    # 3. clear by hand, plan, sign, hand to cloud's DispatchGoal (as the controller would)
    cleared = {(loc, t): share * curves.curves[(loc, t)].baseline_kw
               for loc, shares in CLEARED_SHARE.items() for t, share in enumerate(shares)}
    plan = plan_dispatch(cleared, curves, portfolio, issued_ms=0)
    assert not plan.clipped
    assert plan.tier_kw[("675.3", "yellow", 1)] > 0                  # 50 % > green's 45 %
    goal = DispatchGoal({"vpp": KEY}, fallback=ConstantGoal(plan.no_shed_kw))
    for loc, payload in dispatch_payloads(plan, "vpp", KEY, issued_ts_ms=0, dispatch_id=1).items():
        assert goal.offer(loc, payload, now_ms=0) == ""
    # 4. the dispatched fleet (same devices and seed), one control group per location
    run = run_scenario(ScenarioConfig(**{**fleet.__dict__, "warmup_s": WARMUP_S, "duration_s": 3 * INTERVAL_S}),
                       goal=RenamedGroups(goal, LOCATIONS))
    for g, loc in enumerate(LOCATIONS.values()):
        baseline = curves.curves[(loc, 0)].baseline_kw
        for t, start_ms in enumerate(STARTS_MS):
            sel = (run.t_s >= start_ms / 1000 + SETTLE_S) & (run.t_s < start_ms / 1000 + INTERVAL_S)
            delivered = baseline - float(run.group_achieved_kw[sel, g].mean())
            err_pct = 100.0 * abs(delivered - plan.reduction_kw[(loc, t)]) / baseline
            assert err_pct <= TOLERANCE_PCT, (loc, t, delivered, plan.reduction_kw[(loc, t)])
    # 5. its telemetry closes the loop: the response ratio of each location
    for rec in dispatch_records(plan):
        stats.record_dispatch(rec)
    write_timeseries(run, tmp_path / "dispatched.csv")
    stats.ingest(read_timeseries_csv(tmp_path / "dispatched.csv", TIERS, groups=LOCATIONS))
    for loc in LOCATIONS.values():
        assert stats.response_ratio(loc) == pytest.approx(1.0, abs=0.05)
