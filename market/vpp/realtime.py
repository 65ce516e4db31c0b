"""Real-time (5-min) re-clearing of the VPP inside a dispatched day, with the latest fleet state.

    goal = RealTimeGoal(plan, curves, clear_hour, fallback)      # a cloud.goals.GoalSchedule
    # the controller asks goal_kw(location, t_ms, demand_kw) every round; the first ask in market
    # hour h calls clear_hour(h, caps) once and then follows its 5-min reductions

`demand_kw` is what the controller's estimator says the location draws (enabled + disabled: the
latest fleet state it has). The VPP's real-time offer for hour h, per location·tier, is
`rt_caps`: the day-ahead offered kW of the tiers the day-ahead plan already curtails in h, scaled
by min(1, latest demand / the location's baseline demand); every other tier 0. So a real-time
clearing can move the reduction within the hours and tiers the contracts already pay for, never
add a curtailed hour or event (contracts stay as the day-ahead plan honoured them).

`clear_hour(h, caps)` returns {(location, k): reduction kW} for the hour's 5-min intervals k (the
LEM's RTM, colorgrid/commands/day_rtm.py); the goal in 5-min interval k of hour h is the
location's baseline − that reduction (never below black), or the no-shed goal where it is 0.
"""
from __future__ import annotations

from typing import Callable, Mapping

from cloud.goals import SOURCE_VPP, GoalSchedule
from market.vpp.dispatch import TOL_KW, DispatchPlan
from market.vpp.supply import SupplyCurves, offer_id

RT_MS = 300_000


def rt_caps(plan: DispatchPlan, curves: SupplyCurves, hour: int, demand_ratio: Mapping[str, float]) -> dict[str, float]:
    """{offer id: real-time p_max kW in `hour`} (module docstring)."""
    caps = {}
    for loc in plan.locations():
        ratio = min(1.0, max(0.0, float(demand_ratio.get(loc, 1.0))))
        for tier in plan.tiers:
            used = plan.tier_kw.get((loc, tier, hour), 0.0) > TOL_KW
            caps[offer_id(loc, tier)] = curves.quantity_kw(loc, tier, hour) * ratio if used else 0.0
    return caps


class RealTimeGoal(GoalSchedule):
    """The day's goals re-cleared hour by hour at 5-min resolution (module docstring)."""

    def __init__(self, plan: DispatchPlan, curves: SupplyCurves,
                 clear_hour: Callable[[int, dict[str, float]], dict[tuple[str, int], float]],
                 fallback: GoalSchedule, rt_ms: int = RT_MS):
        self.plan, self.curves, self.clear_hour, self.fallback = plan, curves, clear_hour, fallback
        self.rt_ms = rt_ms
        self.per = plan.interval_ms // rt_ms
        self.cleared: dict[int, dict[tuple[str, int], float]] = {}
        self.demand_ratio: dict[str, float] = {}
        self.base_demand = {loc: plan.no_shed_kw[loc] for loc in plan.locations()}

    def _where(self, t_ms: int) -> tuple[int, int] | None:
        start = self.plan.starts_ms[0]
        if t_ms < start:
            return None
        h = (int(t_ms) - start) // self.plan.interval_ms
        if h >= len(self.plan.starts_ms):
            return None
        return int(h), int((int(t_ms) - self.plan.starts_ms[h]) // self.rt_ms)

    def reduction_kw(self, group: str, t_ms: int) -> float | None:
        """The real-time reduction in force at t_ms (None outside the day or before its clearing)."""
        at = self._where(t_ms)
        if at is None or at[0] not in self.cleared:
            return None
        return self.cleared[at[0]].get((group, min(at[1], self.per - 1)), 0.0)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        if demand_kw is not None and group in self.base_demand and self.base_demand[group] > 0:
            self.demand_ratio[group] = float(demand_kw) / self.base_demand[group]
        at = self._where(t_ms)
        if at is None or (group, at[0]) not in self.plan.baseline_kw:
            return float(self.fallback.goal_kw(group, t_ms, demand_kw))
        h, _ = at
        if h not in self.cleared:
            self.cleared[h] = dict(self.clear_hour(h, rt_caps(self.plan, self.curves, h, self.demand_ratio)))
        r = self.reduction_kw(group, t_ms) or 0.0
        if r <= TOL_KW:
            return self.plan.no_shed_kw[group]
        return max(self.plan.baseline_kw[(group, h)] - r, self.plan.black_kw[(group, h)])

    def source(self, group: str, t_ms: int) -> str:
        return SOURCE_VPP if self._where(t_ms) is not None else self.fallback.source(group, t_ms)
