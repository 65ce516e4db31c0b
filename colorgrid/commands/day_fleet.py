"""The simulated fleet of `colorgrid day`: devices per VPP location, the undispatched telemetry for the
yield statistics, the dispatched run and what it delivered per location·interval.

Simulated time: the vectorized fleet at 2-s rounds with the real refractory timers. Market interval
t (1 h) is a window of `sim_s_per_interval` simulated seconds after a 60-s warm-up: 300 s by default
(compression factor 12: the fleet meets every interval change of the day in 2 h of simulated time,
which is stricter on tracking and on the per-device switching budget than real hours are);
`--no-compression` makes it 3600 s, i.e. 2-s rounds over the real day. Delivered kW of interval t =
its baseline − the mean of the devices' true enabled kW (`group_achieved_kw`, not the controller's
estimate) over the window after its first `settle_s`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WARM_S = 60.0
TIER_SETTLE_S = 181.0      # T_DF + T_DV + 1 s (market.vpp.yield_stats.SETTLE_S): a tier still shed after this is shed anew
TRACKING_COLUMNS = ["location", "interval", "goal_kw", "enabled_kw", "estimate_kw", "tracking_rms_kw",
                    "tracking_rms_pct", "estimate_error_kw"]


class Compressed:
    """A goal schedule (cloud.goals.GoalSchedule's two methods) in market time asked in simulated
    time: window t of `window_ms` (after `warm_ms`) is market interval t of `interval_ms` from
    `start_ms`; the warm-up lies before the first interval (the schedule's fallback)."""

    def __init__(self, goal, start_ms: int, warm_ms: int, window_ms: int, interval_ms: int):
        self.goal, self.start_ms, self.warm_ms = goal, start_ms, warm_ms
        self.window_ms, self.interval_ms = window_ms, interval_ms

    def market_ms(self, t_ms: int) -> int:
        if t_ms < self.warm_ms:
            return self.start_ms - 1
        return self.start_ms + (t_ms - self.warm_ms) * self.interval_ms // self.window_ms

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.goal.goal_kw(group, self.market_ms(t_ms), demand_kw)

    def source(self, group: str, t_ms: int) -> str:
        return self.goal.source(group, self.market_ms(t_ms))


@dataclass
class Fleet:
    """One control group per location, `per_loc` devices each (contiguous gateways of 10)."""

    locs: list[str]
    per_loc: int
    sizes: np.ndarray                  # rated kW per device, location blocks in `locs` order
    seed: int

    @classmethod
    def sized(cls, locs: list[str], loc_kw: dict[str, float], per_loc: int, share: float, seed: int) -> "Fleet":
        """Uniform 1–5 kW draws scaled per location to `share` × its load."""
        rng = np.random.default_rng([seed, 17])
        sizes = []
        for loc in locs:
            draw = 1.0 + 4.0 * rng.random(per_loc)
            sizes.append(draw * share * loc_kw[loc] / draw.sum())
        return cls(list(locs), per_loc, np.concatenate(sizes), seed)

    @property
    def names(self) -> dict[str, str]:
        """Simulator group name -> location."""
        return {f"g{g}": loc for g, loc in enumerate(self.locs)} if len(self.locs) > 1 else {"fleet": self.locs[0]}

    def device_rows(self) -> list[list]:
        return [[i, self.locs[i // self.per_loc], float(kw)] for i, kw in enumerate(self.sizes)]

    def config(self, devices_csv, warmup_s: float, duration_s: float):
        from firmware_sim.scenario import ScenarioConfig

        return ScenarioConfig(scenario="fairness", devices=self.per_loc * len(self.locs), groups=len(self.locs),
                              base=1.0, amplitude=0.0, warmup_s=warmup_s, duration_s=duration_s, seed=self.seed,
                              device_kw=str(devices_csv), devices_per_gateway=10)


def baseline_telemetry(fleet: Fleet, devices_csv, starts_ms: list[int], window_s: float):
    """The undispatched fleet, `window_s` per hour of day stamped at that hour's start: (result,
    telemetry rows per location)."""
    from firmware_sim.scenario import run_scenario
    from market.vpp import TelemetryRow

    res = run_scenario(fleet.config(devices_csv, 0.0, window_s * len(starts_ms)))
    names = fleet.names
    hour = (res.t_s // window_s).astype(int)
    rows = []
    for g, name in enumerate(res.group_names):
        loc = names[name]
        for m in range(res.t_s.size):
            t_ms = starts_ms[hour[m]] + int(round((res.t_s[m] - hour[m] * window_s) * 1000))
            rows.append(TelemetryRow(loc, t_ms, tuple(float(x) for x in res.group_enabled_tier_kw[m, g]),
                                     tuple(bool(p > 1e-6) for p in res.group_p_off[m, g])))
    return res, rows


def run_dispatched(fleet: Fleet, devices_csv, goal, day_start_ms: int, interval_ms: int, n: int,
                   sim_s_per_interval: float):
    """The fleet driven by `goal` (a GoalSchedule per location, in market time) through n windows."""
    from firmware_sim.scenario import run_scenario
    from market.vpp import RenamedGroups

    compressed = Compressed(RenamedGroups(goal, fleet.names), day_start_ms, int(WARM_S * 1000),
                            int(round(sim_s_per_interval * 1000)), interval_ms)
    return run_scenario(fleet.config(devices_csv, WARM_S, sim_s_per_interval * n), goal=compressed), compressed


def measure(fleet: Fleet, base_res, run, plan, curves, cleared, sim_s_per_interval: float, settle_s: float,
            reference=None):
    """(DispatchRow per location·interval, tracking rows) of the dispatched run (module docstring).
    `reference(location, t_s)`: the reduction in force at simulated t_s (real-time clearing); then
    an interval's cleared kW is its mean over the judged rounds instead of the day-ahead `cleared`."""
    from market.vpp.checks import DispatchRow

    names = fleet.names
    tier_base = base_res.group_enabled_tier_kw.mean(axis=0)        # (groups, tiers): undispatched
    n_shed = len(curves.tiers)
    rows, tracking = [], []
    for g, name in enumerate(run.group_names):
        loc = names[name]
        for t in range(len(curves.starts_ms)):
            lo = WARM_S + t * sim_s_per_interval + settle_s
            hi = WARM_S + (t + 1) * sim_s_per_interval
            sel = (run.t_s >= lo - 1e-9) & (run.t_s < hi - 1e-9)
            base = curves.curves[(loc, t)].baseline_kw
            enabled = run.group_achieved_kw[sel, g]
            estimate = run.group_estimate_kw[sel, g]
            goal = run.group_goal_kw[sel, g]
            # a tier counts as shed only after the refractory tail of the window before (module docstring)
            late = (run.t_s >= WARM_S + t * sim_s_per_interval + max(settle_s, min(TIER_SETTLE_S, 0.8 * sim_s_per_interval)) - 1e-9) & \
                (run.t_s < hi - 1e-9)
            tiers_on = run.group_enabled_tier_kw[late, g].mean(axis=0)
            if reference is None:
                ref = float(cleared.get((loc, t), 0.0))
            else:
                ref = float(np.mean([reference(loc, float(x)) or 0.0 for x in run.t_s[sel]]))
            rows.append(DispatchRow(loc, t, curves.starts_ms[t], base, ref,
                                    plan.reduction_kw.get((loc, t), 0.0), plan.goal_kw(loc, t),
                                    base - float(enabled.mean()),
                                    tuple(plan.tier_kw.get((loc, tier, t), 0.0) for tier in curves.tiers),
                                    tuple(float(tier_base[g, i] - tiers_on[i]) for i in range(n_shed))))
            rms = float(np.sqrt(np.mean((enabled - goal) ** 2)))
            tracking.append([loc, t, float(goal.mean()), float(enabled.mean()), float(estimate.mean()), rms,
                             100.0 * rms / base if base > 0 else 0.0, float(estimate.mean() - enabled.mean())])
    return rows, tracking
