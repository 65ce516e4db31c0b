"""Virtual power plant (VPP): from the colour portfolio and fleet telemetry to a supply curve of
demand reduction bid into the LEM, and from the cleared dispatch back to goal schedules per control
group (ARCHITECTURE §6). See market/vpp/README.md.

    portfolio = Portfolio.load("portfolio.toml")
    stats = YieldStats(SqliteYieldStore("vpp.db"), portfolio.tiers)
    stats.ingest(read_rounds_csv("out/rounds.csv", portfolio.tiers, origin_ms))
    curves = build_supply(portfolio, stats, starts_ms, interval_h=1.0, confidence=0.9)
    market = with_vpp_offers(market_doc, curves)                 # LEM schema, validated
    plan = plan_dispatch(cleared_from_schedule(clearing.schedule), curves, portfolio, issued_ms)
    payloads = dispatch_payloads(plan, "vpp", key, issued_ms, dispatch_id)   # signed, per group
"""
from market.vpp.dispatch import (DispatchPlan, DispatchPlanError, RenamedGroups, VppGoal, cleared_from_schedule,
                                 dispatch_payloads, dispatch_points, dispatch_records, plan_dispatch,
                                 read_schedule_csv)
from market.vpp.portfolio import Holding, Portfolio, PortfolioError, TierContract
from market.vpp.sqlite_store import SqliteYieldStore
from market.vpp.store import Bucket, DispatchRecord, FakeYieldStore, YieldStore
from market.vpp.supply import (LocationSupply, SupplyCurves, SupplyError, SupplyStep, build_supply,
                               choose_intervals, feeder_supply, lem_offers, offer_id, parse_offer_id,
                               tier_price_usd_per_mwh, with_vpp_offers)
from market.vpp.yield_stats import (TelemetryError, TelemetryRow, YieldStats, read_rounds_csv,
                                    read_timeseries_csv)

__all__ = ["Bucket", "DispatchPlan", "DispatchPlanError", "DispatchRecord", "FakeYieldStore", "Holding",
           "LocationSupply", "Portfolio", "PortfolioError", "RenamedGroups", "SqliteYieldStore", "SupplyCurves",
           "SupplyError", "SupplyStep", "TelemetryError", "TelemetryRow", "TierContract", "VppGoal", "YieldStats",
           "YieldStore", "build_supply", "choose_intervals", "cleared_from_schedule", "dispatch_payloads",
           "dispatch_points", "dispatch_records", "feeder_supply", "lem_offers", "offer_id", "parse_offer_id",
           "plan_dispatch", "read_rounds_csv", "read_schedule_csv", "read_timeseries_csv",
           "tier_price_usd_per_mwh", "with_vpp_offers"]
