"""Local energy market (LEM): day-ahead clearing on the three-phase feeder and DLMPs from LP duals.

    from market.lem import load_market, build_network_data, clear_dam
    market = load_market("offers.json")
    net = build_network_data(FeederNetwork.from_dss(path), market.intervals)
    result = clear_dam(market, net)          # MIP, then the fixed-integer pricing LP
    result.prices.dlmp_usd_per_mwh           # (locations × intervals), with its four components
    it = clear_with_ac(market, load_dss(path)[0], load_shape)   # iterated with the AC power flow
    it.status, it.iterations, it.critical, it.clearing
    dam = DamReference.from_clearing(market, it.net, it.clearing, it.critical)   # the real-time market
    rt = clear_rtm(market, dam, rt_network(feeder, market, dam, 18, [1.0] * 12), 18); settle_rtm(market, dam, rt)

See market/lem/README.md.
"""
from market.lem.ac_flow import ACPowerFlow, OperatingPoint
from market.lem.iteration import ACViolation, IteratedClearing, IterationReport, clear_with_ac, node_injections
from market.lem.network_data import CriticalSet, IntervalNetwork, NetworkData, build_network_data
from market.lem.pricing import Clearing, Prices, PricingError, clear_dam, dlmp_components, pricing_lp
from market.lem.problem import ClearingError, SlackUse, build_dam, slack_report, solve_model
from market.lem.schema import Market, MarketDataError, json_schema, load_market
from market.lem.blocks import block_report, clear_without_paradox
from market.lem.equilibrium import equilibrium_gaps, self_schedules
from market.lem.rtm import DamReference, RtClearing, RtmDataError, clear_rtm, rt_market, rt_network
from market.lem.rtm_settlement import settle_rtm

__all__ = ["ACPowerFlow", "ACViolation", "IteratedClearing", "IterationReport", "OperatingPoint", "clear_with_ac",
           "node_injections", "Clearing", "ClearingError", "CriticalSet", "IntervalNetwork", "Market", "MarketDataError", "NetworkData",
           "Prices", "PricingError", "SlackUse", "build_dam", "build_network_data", "clear_dam", "dlmp_components",
           "json_schema", "load_market", "pricing_lp", "slack_report", "solve_model", "block_report",
           "clear_without_paradox", "equilibrium_gaps", "self_schedules", "DamReference", "RtClearing", "RtmDataError",
           "clear_rtm", "rt_market", "rt_network", "settle_rtm"]
