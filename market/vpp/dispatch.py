"""Cleared VPP quantities → goal schedules per control group (group id = location id).

    cleared = cleared_from_schedule(clearing.schedule)        # {(location, interval): kW reduction}
    plan = plan_dispatch(cleared, curves, portfolio, issued_ms=now_ms)
    payloads = dispatch_payloads(plan, key_id="vpp", key=key, issued_ts_ms=now_ms, dispatch_id=n)
    for loc, p in payloads.items(): cloud.dispatch.publish_dispatch(url, loc, p)    # or DispatchGoal.offer
    goal = VppGoal(plan, fallback=None)                        # the same plan in process (simulator)

The control law sheds in tier order (green first), whatever tier cleared. So the plan splits each
location's cleared reduction r[l,t] the same way — green up to its offered kW, then yellow, … — and
checks the contract of every tier with a part, in time order per UTC day: the tier's minimum notice
(interval start − `issued_ms`), its curtailment hours (each interval with a part counts
interval_h hours) and its events (runs of consecutive curtailed intervals). The first tier that would
break its contract caps the reduction at the parts of the tiers before it (green breaking: no
reduction at all), and `clipped` says why. A reduction above what was offered is capped at the offer.
The goal is the location's baseline (mean enabled kW, from the supply curve) minus the reduction,
never below the black tier's enabled kW; in an interval without reduction the goal is the location's
contracted kW, so nothing is shed.

Within an interval the goal may also follow a regulation signal: `VppGoal(plan, regulation_kw=
{(location, interval): capacity_kw}, signal=...)` adds capacity·signal(t) (the packaged 2-s PJM
signal by default), kept within [black kW, goal without reduction].
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from cloud.dispatch import make_dispatch
from cloud.goals import SOURCE_FALLBACK, SOURCE_VPP, GoalError, GoalSchedule, RegulationGoal
from market.vpp.portfolio import Portfolio
from market.vpp.store import DispatchRecord
from market.vpp.supply import DAY_MS, SupplyCurves, parse_offer_id

TOL_KW = 1e-6


class DispatchPlanError(ValueError):
    """A schedule or plan that cannot be turned into goals (the message names the field or line)."""


@dataclass
class DispatchPlan:
    starts_ms: tuple[int, ...]
    interval_ms: int
    tiers: tuple[str, ...]                                    # sheddable tiers, shed order
    baseline_kw: dict[tuple[str, int], float]
    black_kw: dict[tuple[str, int], float]
    no_shed_kw: dict[str, float]                              # goal where nothing is dispatched
    cleared_kw: dict[tuple[str, int], float]
    reduction_kw: dict[tuple[str, int], float]                # honoured reduction
    tier_kw: dict[tuple[str, str, int], float]                # its split over tiers
    clipped: list[str] = field(default_factory=list)

    def locations(self) -> list[str]:
        return sorted({loc for loc, _ in self.baseline_kw})

    def goal_kw(self, location: str, interval: int) -> float:
        r = self.reduction_kw.get((location, interval), 0.0)
        if r <= TOL_KW:
            return self.no_shed_kw[location]
        return max(self.baseline_kw[(location, interval)] - r, self.black_kw[(location, interval)])

    def curtailed_intervals(self, location: str, tier: str) -> list[int]:
        return [t for t in range(len(self.starts_ms)) if self.tier_kw.get((location, tier, t), 0.0) > TOL_KW]


def cleared_from_schedule(schedule: Mapping[str, Sequence[float]]) -> dict[tuple[str, int], float]:
    """{(location, interval): cleared kW} summed over the VPP's offers in a LEM schedule
    ({resource id: kW per interval}, `market.lem.problem.schedule`); other resources are ignored."""
    out: dict[tuple[str, int], float] = {}
    for resource, series in schedule.items():
        parsed = parse_offer_id(resource)
        if parsed is None:
            continue
        for t, kw in enumerate(series):
            out[(parsed[0], t)] = out.get((parsed[0], t), 0.0) + float(kw)
    return out


def read_schedule_csv(path: str | Path) -> dict[str, list[float]]:
    """A LEM schedule.csv (`resource, bus, phase, interval, p_kw, q_kvar`) as {resource: kW per interval}."""
    rows: dict[str, dict[int, float]] = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("resource", "interval", "p_kw") if c not in (reader.fieldnames or [])]
        if missing:
            raise DispatchPlanError(f"{path}: missing column(s) {', '.join(missing)}")
        for n, rec in enumerate(reader, start=2):
            try:
                t, kw = int(rec["interval"]), float(rec["p_kw"])
            except (TypeError, ValueError):
                raise DispatchPlanError(f"{path} line {n}: interval/p_kw not numbers") from None
            if t < 0 or not math.isfinite(kw):
                raise DispatchPlanError(f"{path} line {n}: interval < 0 or p_kw not finite")
            per = rows.setdefault(rec["resource"], {})
            per[t] = per.get(t, 0.0) + kw          # a resource split over phases has a row per phase
    size = 1 + max((max(v) for v in rows.values() if v), default=-1)
    return {r: [v.get(t, 0.0) for t in range(size)] for r, v in rows.items()}


def plan_dispatch(cleared: Mapping[tuple[str, int], float], curves: SupplyCurves, portfolio: Portfolio,
                  issued_ms: int | None = None) -> DispatchPlan:
    """The honoured reductions and goals for the cleared quantities (module docstring)."""
    n = len(curves.starts_ms)
    for (loc, t) in cleared:
        if (loc, t) not in curves.curves and abs(cleared[(loc, t)]) > TOL_KW:
            raise DispatchPlanError(f"cleared[{loc}, {t}]: nothing was offered there")
    plan = DispatchPlan(curves.starts_ms, curves.interval_ms, curves.tiers,
                        {k: c.baseline_kw for k, c in curves.curves.items()},
                        {k: c.black_kw for k, c in curves.curves.items()},
                        {loc: max(portfolio.kw(loc), *(c.baseline_kw for (l2, _), c in curves.curves.items()
                                                        if l2 == loc)) for loc in curves.locations()},
                        dict(cleared), {}, {})
    for loc in curves.locations():
        _plan_location(plan, loc, cleared, curves, portfolio, issued_ms, n)
    return plan


def _plan_location(plan, loc, cleared, curves, portfolio, issued_ms, n) -> None:
    used: dict[tuple[str, int], int] = {}       # (tier, day) -> curtailed intervals
    events: dict[tuple[str, int], int] = {}
    last: dict[str, int] = {}                   # tier -> last curtailed interval
    for t in range(n):
        curve = curves.curves.get((loc, t))
        if curve is None:
            continue
        r = float(cleared.get((loc, t), 0.0))
        if r < -TOL_KW:
            plan.clipped.append(f"{loc} interval {t}: negative clearing {r:g} kW ignored")
        r = max(r, 0.0)
        if r > curve.total_kw + TOL_KW:
            plan.clipped.append(f"{loc} interval {t}: cleared {r:g} kW above the {curve.total_kw:g} kW offered")
            r = curve.total_kw
        parts, left = [], r
        for step in curve.steps:                 # green first, as the law sheds
            take = min(left, step.p_kw)
            parts.append((step.tier, take))
            left -= take
        day, start = curves.starts_ms[t] // DAY_MS, curves.starts_ms[t]
        continues = t > 0 and curves.starts_ms[t - 1] // DAY_MS == day
        honoured: list[tuple[str, float, bool]] = []
        for tier, kw in parts:
            if kw <= TOL_KW:
                continue
            c = portfolio.holding(loc, tier).contract
            new_event = not (continues and last.get(tier) == t - 1)
            why = None
            if issued_ms is not None and start - issued_ms < c.min_notice_min * 60_000:
                why = f"{tier} needs {c.min_notice_min:g} min notice, has {(start - issued_ms) / 60_000:g}"
            elif used.get((tier, day), 0) + 1 > c.max_intervals_per_day(curves.interval_h):
                why = f"{tier} has used its {c.max_curtailment_h_per_day:g} h of the day"
            elif new_event and events.get((tier, day), 0) + 1 > c.max_events_per_day:
                why = f"{tier} has used its {c.max_events_per_day} events of the day"
            if why is not None:
                kept = sum(x[1] for x in honoured)
                plan.clipped.append(f"{loc} interval {t}: reduction {r:g} -> {kept:g} kW ({why})")
                break
            honoured.append((tier, kw, new_event))
        for tier, kw, new_event in honoured:     # book what is honoured
            plan.tier_kw[(loc, tier, t)] = kw
            used[(tier, day)] = used.get((tier, day), 0) + 1
            events[(tier, day)] = events.get((tier, day), 0) + int(new_event)
            last[tier] = t
        total = sum(kw for _, kw, _ in honoured)
        plan.reduction_kw[(loc, t)] = min(total, max(curve.baseline_kw - curve.black_kw, 0.0))


def dispatch_points(plan: DispatchPlan, location: str) -> tuple[list[tuple[int, float]], int]:
    """([(ts_ms, goal_kw)] per interval, valid_until_ts_ms) of one location's goal schedule."""
    ts = [t for t in range(len(plan.starts_ms)) if (location, t) in plan.baseline_kw]
    if not ts:
        raise DispatchPlanError(f"{location}: no interval with a supply curve")
    if ts != list(range(ts[0], ts[-1] + 1)):
        raise DispatchPlanError(f"{location}: intervals {ts} are not contiguous (missing yield statistics)")
    points = [(plan.starts_ms[t], plan.goal_kw(location, t)) for t in ts]
    return points, plan.starts_ms[ts[-1]] + plan.interval_ms


def dispatch_payloads(plan: DispatchPlan, key_id: str, key: bytes, issued_ts_ms: int,
                      dispatch_id: int) -> dict[str, bytes]:
    """Signed `cloud.dispatch` payloads, one per location (= control group)."""
    out = {}
    for loc in plan.locations():
        points, until = dispatch_points(plan, loc)
        out[loc] = make_dispatch(loc, dispatch_id, points, issued_ts_ms, until, key_id, key)
    return out


def dispatch_records(plan: DispatchPlan) -> list[DispatchRecord]:
    """What was asked per location·interval with a reduction, for the yield store's response figures."""
    return [DispatchRecord(loc, plan.starts_ms[t], plan.starts_ms[t] + plan.interval_ms,
                           plan.baseline_kw[(loc, t)], plan.goal_kw(loc, t))
            for (loc, t), r in sorted(plan.reduction_kw.items()) if r > TOL_KW]


class VppGoal(GoalSchedule):
    """A dispatch plan as an in-process goal schedule (groups = location ids), source "vpp"; outside
    the plan's horizon `fallback` (None: GoalError). Optional regulation within intervals."""

    def __init__(self, plan: DispatchPlan, fallback: GoalSchedule | None = None,
                 regulation_kw: Mapping[tuple[str, int], float] | None = None,
                 signal: Sequence[float] | None = None):
        self.plan, self.fallback = plan, fallback
        self.regulation_kw = dict(regulation_kw or {})
        self._signal = RegulationGoal(0.0, 1.0, signal, start_ms=plan.starts_ms[0]) if self.regulation_kw else None

    def _interval(self, group: str, t_ms: int) -> int | None:
        starts = self.plan.starts_ms
        t = (int(t_ms) - starts[0]) // self.plan.interval_ms
        if 0 <= t < len(starts) and (group, t) in self.plan.baseline_kw:
            return int(t)
        return None

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        t = self._interval(group, t_ms)
        if t is None:
            if self.fallback is None:
                raise GoalError(f"group {group!r}: outside the VPP plan at {t_ms} and no fallback goal")
            return float(self.fallback.goal_kw(group, t_ms, demand_kw))
        goal = self.plan.goal_kw(group, t)
        cap = self.regulation_kw.get((group, t), 0.0)
        if cap:
            hi = max(self.plan.baseline_kw[(group, t)], self.plan.black_kw[(group, t)])
            goal = min(max(goal + cap * self._signal.signal_at(t_ms), self.plan.black_kw[(group, t)]), hi)
        return goal

    def source(self, group: str, t_ms: int) -> str:
        if self._interval(group, t_ms) is not None:
            return SOURCE_VPP
        return self.fallback.source(group, t_ms) if self.fallback is not None else SOURCE_FALLBACK


class RenamedGroups(GoalSchedule):
    """`goal` asked under other group names: `names[group]` (e.g. the simulator's g0 → "671.1")."""

    def __init__(self, goal: GoalSchedule, names: Mapping[str, str]):
        self.goal, self.names = goal, dict(names)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.goal.goal_kw(self.names.get(group, group), t_ms, demand_kw)

    def source(self, group: str, t_ms: int) -> str:
        return self.goal.source(self.names.get(group, group), t_ms)
