"""Accepted OpenADR events as goal schedules through cloud's goal contract.

    goal = AdrGoal(no_shed_kw={"671.1": 180.0}, fallback=ConstantGoal(180.0))
    goal.apply(decision)                   # an opt-in replaces the event's goals; opt-out/cancel withdraws
    goal.goal_kw("671.1", t_ms)            # a GoalSchedule like any other; source "openadr" inside an event
    points, until = goal.points("671.1", now_ms)          # piecewise constant, for a signed dispatch
    payloads = goal.payloads(now_ms, dispatch_id, key_id, key)   # cloud.dispatch.make_dispatch, per location

In an event interval the goal is the decision's goal kW; during the event's ramp-up period before
its first interval the goal moves linearly from that interval's baseline to its goal (only where the
first interval sheds). Where two accepted events overlap at a location the one applied last counts.
Outside every event: `fallback` (None: GoalError).

The signed schedule (`points`) is the same goal made piecewise constant: the ramp in steps of
`ramp_step_ms` (60 s), each at the linear value of its midpoint; between events of a location the
no-shed kW (nothing is shed); from the last interval's end on the controller's own fallback applies
(cloud.dispatch). Each publication carries every event of the location not yet over (a newer
dispatch replaces the whole schedule).
"""
from __future__ import annotations

import threading
from typing import Mapping

from cloud.dispatch import make_dispatch
from cloud.goals import SOURCE_FALLBACK, SOURCE_OPENADR, GoalError, GoalSchedule
from market.vpp.openadr.decide import TOL_KW, Decision, GoalInterval

RAMP_STEP_MS = 60_000


class AdrGoal(GoalSchedule):
    """Goal schedule of the accepted events (module docstring). Thread-safe."""

    def __init__(self, no_shed_kw: Mapping[str, float], fallback: GoalSchedule | None = None,
                 ramp_step_ms: int = RAMP_STEP_MS):
        if ramp_step_ms <= 0:
            raise GoalError("ramp_step_ms must be > 0")
        self.no_shed_kw, self.fallback, self.ramp_step_ms = dict(no_shed_kw), fallback, int(ramp_step_ms)
        self._events: dict[str, Decision] = {}          # insertion order = application order
        self._lock = threading.Lock()

    def apply(self, decision: Decision) -> bool:
        """Take a decision: opted-in goals replace the event's earlier ones; otherwise they go.
        True when the goals changed (something added or withdrawn)."""
        with self._lock:
            held = self._events.pop(decision.event_id, None)
            if decision.opt_in and decision.goals:
                self._events[decision.event_id] = decision
                return True
            return held is not None

    def decisions(self) -> list[Decision]:
        with self._lock:
            return list(self._events.values())

    def locations(self) -> list[str]:
        return sorted({g.location for d in self.decisions() for g in d.goals})

    def _segments(self, location: str):
        """(start_ms, end_ms, value(t) or constant, event_id) of every event at `location`, last applied last."""
        out = []
        for d in self.decisions():
            mine = sorted((g for g in d.goals if g.location == location), key=lambda g: g.start_ms)
            if not mine:
                continue
            first = mine[0]
            if d.ramp_up_ms > 0 and first.reduction_kw > TOL_KW:
                out.append((first.start_ms - d.ramp_up_ms, first.start_ms, _ramp(first, d.ramp_up_ms), d.event_id))
            out += [(g.start_ms, g.end_ms, g.goal_kw, d.event_id) for g in mine]
        return out

    def _at(self, location: str, t_ms: int, step_ms: int | None = None):
        found = None
        for start, end, value, _ in self._segments(location):
            if start <= t_ms < end:
                found = (start, value)
        if found is None:
            return None
        start, value = found
        if not callable(value):
            return value
        if step_ms is None:
            return value(t_ms)
        mid = start + (t_ms - start) // step_ms * step_ms + step_ms / 2
        return value(mid)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        value = self._at(group, int(t_ms))
        if value is not None:
            return float(value)
        if self.fallback is None:
            raise GoalError(f"group {group!r}: no OpenADR event in force at {t_ms} and no fallback goal")
        return float(self.fallback.goal_kw(group, t_ms, demand_kw))

    def source(self, group: str, t_ms: int) -> str:
        if self._at(group, int(t_ms)) is not None:
            return SOURCE_OPENADR
        return self.fallback.source(group, t_ms) if self.fallback is not None else SOURCE_FALLBACK

    def points(self, location: str, now_ms: int) -> tuple[list[tuple[int, float]], int] | None:
        """([(ts_ms, goal_kw)], valid_until_ts_ms) of the location's events not over at `now_ms`
        (piecewise constant, see the module docstring); None when there is none."""
        segs = [s for s in self._segments(location) if s[1] > now_ms]
        if not segs:
            return None
        cuts = set()
        for start, end, value, _ in segs:
            cuts.update((start, end))
            if callable(value):
                cuts.update(range(start, end, self.ramp_step_ms))
        until = max(s[1] for s in segs)
        points: list[tuple[int, float]] = []
        for ts in sorted(c for c in cuts if c < until):
            value = self._at(location, ts, self.ramp_step_ms)
            kw = float(self.no_shed_kw.get(location, 0.0) if value is None else value)
            if not points or abs(points[-1][1] - kw) > 1e-9:
                points.append((ts, kw))
        return points, until

    def payloads(self, now_ms: int, dispatch_id: int, key_id: str, key: bytes,
                 locations: list[str] | None = None) -> dict[str, bytes]:
        """Signed `cloud.dispatch` schedules, one per location with an event not yet over."""
        out = {}
        for loc in locations if locations is not None else self.locations():
            found = self.points(loc, now_ms)
            if found is not None:
                out[loc] = make_dispatch(loc, dispatch_id, found[0], now_ms, found[1], key_id, key)
        return out


def _ramp(first: GoalInterval, ramp_ms: int):
    start = first.start_ms - ramp_ms

    def value(t_ms: float) -> float:
        frac = min(max((t_ms - start) / ramp_ms, 0.0), 1.0)
        return first.baseline_kw + frac * (first.goal_kw - first.baseline_kw)

    return value
