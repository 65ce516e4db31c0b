"""`colorgrid day --rtm`: each market hour re-cleared as 12 real-time 5-min intervals by the LEM's RTM
(`market.lem.rtm`: the day-ahead commitments held, each interval linearised at the AC solution of
the DA schedule), the VPP's offers capped by `market.vpp.realtime.rt_caps` (the latest fleet state
the controller reports, only the tiers and hours the day-ahead plan already curtails).

    clearer = HourClearer(market, result, feeder)
    goal = RealTimeGoal(plan, curves, clearer, fallback)     # asked by the fleet's controller
    clearer.rows                                             # rtm.csv
"""
from __future__ import annotations

import time

import numpy as np

RT_PER_HOUR = 12
RTM_COLUMNS = ["hour", "rt_interval", "location", "tier", "cap_kw", "da_cleared_kw", "rt_cleared_kw",
               "rt_dlmp_usd_per_mwh"]


class RtmFailed(RuntimeError):
    """A real-time clearing that failed (one line)."""


class HourClearer:
    def __init__(self, market, result, feeder):
        from market.lem.ac_flow import ACPowerFlow
        from market.lem.rtm import DamReference

        self.market, self.result, self.feeder = market, result, feeder
        self.dam = DamReference.from_clearing(market, result.net, result.clearing, result.critical)
        self.factors = self.dam.load_factor(ACPowerFlow(feeder).nominal_load_kw)
        self.rows: list[list] = []
        self.seconds: list[float] = []

    def _market_with_caps(self, hour: int, caps: dict[str, float]):
        from market.lem.schema import load_market

        doc = self.market.model_dump()
        for o in doc["offers"]:
            if o["id"] in caps:
                series = list(o["p_max_kw"])
                series[hour] = min(float(series[hour]), float(caps[o["id"]]))
                o["p_max_kw"] = series
        return load_market(doc)

    def __call__(self, hour: int, caps: dict[str, float]) -> dict[tuple[str, int], float]:
        from market.lem.pricing import PricingError
        from market.lem.problem import ClearingError
        from market.lem.rtm import RtmDataError, clear_rtm, rt_network
        from market.network import PowerFlowNotConverged
        from market.vpp import parse_offer_id

        t0 = time.perf_counter()
        try:
            market = self._market_with_caps(hour, caps)
            net = rt_network(self.feeder, market, self.dam, hour, [float(self.factors[hour])] * RT_PER_HOUR)
            rt = clear_rtm(market, self.dam, net, hour, mip_rel_gap=1e-4)
        except (RtmDataError, ClearingError, PricingError, PowerFlowNotConverged, ValueError) as exc:
            raise RtmFailed(f"real-time clearing of hour {hour}: {' '.join(str(exc).split())}") from None
        prices = rt.clearing.prices
        col = {loc: j for j, loc in enumerate(prices.locations)}
        out: dict[tuple[str, int], float] = {}
        for rid, series in rt.clearing.schedule_kw.items():
            parsed = parse_offer_id(rid)
            if parsed is None:
                continue
            loc, tier = parsed
            da = float(self.result.clearing.schedule_kw[rid][hour])
            for k, kw in enumerate(np.asarray(series, float)):
                out[(loc, k)] = out.get((loc, k), 0.0) + float(kw)
                self.rows.append([hour, k, loc, tier, caps.get(rid, 0.0), da, float(kw),
                                  float(prices.dlmp_usd_per_mwh[col[loc], k])])
        self.seconds.append(time.perf_counter() - t0)
        return out
