"""An OpenADR event → opt in or out, and the goal per location and interval (no openleadr here).

Two contracts, each with a fake beside it:

- `Flexibility`: per location and time span, the baseline (mean enabled kW, all tiers), the black
  tier's kW and the flexible kW per sheddable tier at the VEN's confidence; plus the tier contracts.
  `StatsFlexibility(portfolio, stats, confidence)` reads them from the yield statistics exactly as the
  supply curve does (market/vpp/supply.py): flexible kW of a tier = min(contracted kW, the
  (1 − confidence) quantile of its available kW in the hours of day the span touches), baseline =
  Σ tiers' mean enabled kW. `FakeFlexibility` is a table.
- `EventMapper`: `decide(event, received_ms) -> Decision`, `release(event_id)`. `FlexibilityMapper`
  implements the rules below; `FakeMapper` returns decisions it was given.

Rules of `FlexibilityMapper.decide` (all kW; R = the reduction asked of the targets together):

1. targets = the event's location ids, or every portfolio location when it names none; a target
   outside the portfolio → opt out.
2. per event interval: setpoint S → R = Σ baseline − S; delta D → R = −D (D > 0, more load, → opt
   out). R ≤ 0 asks for nothing: the goal there is the no-shed kW (contracted kW), nothing is shed.
3. opt out when R > `max_kw` (the VEN's contract limit with the VTN) or R > F = Σ flexible kW of the
   targets (P90 at confidence 0.9), naming the interval and both figures; or when a target lacks
   yield statistics for that interval.
4. R is split over targets in proportion to their flexible kW, each share over tiers in shed order
   (green up to its flexible kW, then yellow, …) as the control law sheds; each tier with a part is
   checked against its contract: notice (first such interval start − received_ms ≥ min_notice),
   curtailment hours per UTC day (the event's hours with a part + hours already booked by accepted
   events), events per day (runs of back-to-back intervals with a part + events booked). The first
   tier that would break its contract → opt out with that reason. Otherwise opt in and book the
   hours and events (an update of the event releases its earlier booking first; a cancellation
   releases it and withdraws the goals).
5. goal per location and interval = baseline − its share, never below the black kW; with a ramp-up
   period the goal goes linearly from the first interval's baseline to its goal over the ramp.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

from market.vpp.openadr.events import DELTA, AdrEvent
from market.vpp.portfolio import Portfolio, TierContract
from market.vpp.yield_stats import YieldStats, hours_of

TOL_KW = 1e-6
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
OPT_IN, OPT_OUT = "optIn", "optOut"


@dataclass(frozen=True)
class Availability:
    baseline_kw: float                     # mean enabled kW, all tiers
    black_kw: float                        # mean enabled kW of the black tier (never shed)
    flexible_kw: tuple[float, ...]         # per sheddable tier, shed order, at the confidence

    @property
    def total_kw(self) -> float:
        return float(sum(self.flexible_kw))


class Flexibility(Protocol):
    """What the VEN can shed (see the module docstring)."""

    tiers: tuple[str, ...]                 # sheddable tiers, shed order

    def locations(self) -> list[str]: ...

    def at(self, location: str, start_ms: int, end_ms: int) -> Availability | None:
        """Availability over [start_ms, end_ms); None without yield statistics."""
        ...

    def contract(self, location: str, tier: str) -> TierContract | None: ...

    def no_shed_kw(self, location: str) -> float:
        """The goal that sheds nothing (the location's contracted kW)."""
        ...


class StatsFlexibility:
    """`Flexibility` from the portfolio and the yield statistics (as `build_supply` reads them)."""

    def __init__(self, portfolio: Portfolio, stats: YieldStats, confidence: float = 0.9):
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence: expected a fraction in [0, 1], got {confidence!r}")
        self.portfolio, self.stats, self.confidence = portfolio, stats, float(confidence)
        self.tiers = tuple(portfolio.sheddable_tiers)

    def locations(self) -> list[str]:
        return list(self.portfolio.locations())

    def at(self, location: str, start_ms: int, end_ms: int) -> Availability | None:
        hours = hours_of(start_ms, end_ms)
        expected = [self.stats.expected_kw(location, tier, hours) for tier in self.portfolio.tiers]
        if any(e is None for e in expected):
            return None
        flexible = []
        for tier in self.tiers:
            h = self.portfolio.holding(location, tier)
            avail = self.stats.available_kw(location, tier, hours, self.confidence) if h is not None else None
            flexible.append(max(0.0, min(h.kw, avail)) if h is not None and avail is not None else 0.0)
        return Availability(float(sum(expected)), float(expected[-1]), tuple(flexible))

    def contract(self, location: str, tier: str) -> TierContract | None:
        h = self.portfolio.holding(location, tier)
        return None if h is None else h.contract

    def no_shed_kw(self, location: str) -> float:
        return float(self.portfolio.kw(location))


class FakeFlexibility:
    """`Flexibility` from a table: {location: Availability} (the same at all times) and contracts."""

    def __init__(self, tiers: Sequence[str], table: Mapping[str, Availability],
                 contracts: Mapping[str, TierContract], no_shed_kw: Mapping[str, float] | None = None):
        self.tiers, self.table, self.contracts = tuple(tiers), dict(table), dict(contracts)
        self._no_shed = dict(no_shed_kw or {})
        self.asked: list[tuple[str, int, int]] = []

    def locations(self) -> list[str]:
        return sorted(self.table)

    def at(self, location: str, start_ms: int, end_ms: int) -> Availability | None:
        self.asked.append((location, start_ms, end_ms))
        return self.table.get(location)

    def contract(self, location: str, tier: str) -> TierContract | None:
        return self.contracts.get(tier)

    def no_shed_kw(self, location: str) -> float:
        return self._no_shed.get(location, self.table[location].baseline_kw)


@dataclass(frozen=True)
class GoalInterval:
    location: str
    start_ms: int
    end_ms: int
    baseline_kw: float
    reduction_kw: float                    # honoured reduction at this location
    goal_kw: float                         # total enabled kW wanted
    tier_kw: tuple[float, ...]             # the reduction per sheddable tier


@dataclass(frozen=True)
class Decision:
    event_id: str
    modification_number: int
    opt_in: bool
    reason: str                            # why (always set for an opt-out)
    goals: tuple[GoalInterval, ...] = ()
    ramp_up_ms: int = 0
    requested_kw: tuple[float, ...] = ()   # R per event interval (all targets)
    flexible_kw: tuple[float, ...] = ()    # F per event interval (all targets)

    @property
    def opt(self) -> str:
        return OPT_IN if self.opt_in else OPT_OUT


class EventMapper(Protocol):
    """Event → decision (opt in/out and the goals); `release` forgets an event's booking."""

    def decide(self, event: AdrEvent, received_ms: int) -> Decision: ...

    def release(self, event_id: str) -> None: ...


class FakeMapper:
    """Test double: returns `decisions[event_id]` (or an opt-out) and records the calls."""

    def __init__(self, decisions: Mapping[str, Decision] | None = None):
        self.decisions = dict(decisions or {})
        self.calls: list[tuple[str, int]] = []
        self.released: list[str] = []

    def decide(self, event: AdrEvent, received_ms: int) -> Decision:
        self.calls.append((event.event_id, received_ms))
        return self.decisions.get(event.event_id,
                                  Decision(event.event_id, event.modification_number, False, "no decision given"))

    def release(self, event_id: str) -> None:
        self.released.append(event_id)


class OptOut(Exception):
    """Raised inside the rules with the reason of an opt-out."""


@dataclass
class _Booking:
    hours: dict[tuple[str, str, int], float] = field(default_factory=dict)    # (loc, tier, day) -> h
    events: dict[tuple[str, str, int], int] = field(default_factory=dict)


class FlexibilityMapper:
    """The VEN's rules (module docstring) over a `Flexibility`; `max_kw` = the VTN contract limit."""

    def __init__(self, flexibility: Flexibility, max_kw: float | None = None):
        self.flex, self.max_kw = flexibility, max_kw
        self.booked: dict[str, _Booking] = {}

    def release(self, event_id: str) -> None:
        self.booked.pop(event_id, None)

    def _used(self, key: tuple[str, str, int]) -> tuple[float, int]:
        return (sum(b.hours.get(key, 0.0) for b in self.booked.values()),
                sum(b.events.get(key, 0) for b in self.booked.values()))

    def decide(self, event: AdrEvent, received_ms: int) -> Decision:
        self.release(event.event_id)
        if event.cancelled:
            return Decision(event.event_id, event.modification_number, True, "cancelled: goals withdrawn")
        requested: list[float] = []
        flexible: list[float] = []
        try:
            goals, booking = self._rules(event, int(received_ms), requested, flexible)
        except OptOut as why:
            return Decision(event.event_id, event.modification_number, False, str(why), (), event.ramp_up_ms,
                            tuple(requested), tuple(flexible))
        self.booked[event.event_id] = booking
        return Decision(event.event_id, event.modification_number, True, "flexibility and contracts allow it",
                        tuple(goals), event.ramp_up_ms, tuple(requested), tuple(flexible))

    def _rules(self, event: AdrEvent, received_ms: int, requested: list, flexible: list):
        known = set(self.flex.locations())
        targets = list(event.targets) or sorted(known)
        outside = [t for t in targets if t not in known]
        if outside:
            raise OptOut(f"target {outside[0]} is not in the VEN's portfolio")
        rows: list[tuple[int, dict[str, Availability], dict[str, float]]] = []
        for j, itv in enumerate(event.intervals):
            avail = {}
            for loc in targets:
                a = self.flex.at(loc, itv.start_ms, itv.end_ms)
                if a is None:
                    raise OptOut(f"interval {j}: no yield statistics for {loc}")
                avail[loc] = a
            if event.signal_type == DELTA:
                if itv.value_kw > TOL_KW:
                    raise OptOut(f"interval {j}: delta +{itv.value_kw:g} kW asks for more load, which is not offered")
                r = -itv.value_kw
            else:
                r = sum(a.baseline_kw for a in avail.values()) - itv.value_kw
            r = max(r, 0.0)
            f = sum(a.total_kw for a in avail.values())
            requested.append(r)
            flexible.append(f)
            if self.max_kw is not None and r > self.max_kw + TOL_KW:
                raise OptOut(f"interval {j}: requested reduction {r:g} kW exceeds the contract limit {self.max_kw:g} kW")
            if r > f + TOL_KW:
                raise OptOut(f"interval {j}: requested reduction {r:g} kW exceeds the {f:g} kW flexible "
                             f"(P{round(100 * getattr(self.flex, 'confidence', 0.9))})")
            rows.append((j, avail, {loc: (r * a.total_kw / f if f > TOL_KW else 0.0) for loc, a in avail.items()}))
        booking = _Booking()
        goals = []
        for loc in targets:
            parts = [self._split(avail[loc], share[loc]) for _, avail, share in rows]
            self._check_contracts(event, loc, parts, received_ms, booking)
            for (j, avail, share), tier_kw in zip(rows, parts):
                itv, a, s = event.intervals[j], avail[loc], share[loc]
                goal = max(a.baseline_kw - s, a.black_kw) if s > TOL_KW else self.flex.no_shed_kw(loc)
                goals.append(GoalInterval(loc, itv.start_ms, itv.end_ms, a.baseline_kw, s if s > TOL_KW else 0.0,
                                          goal, tier_kw))
        return goals, booking

    def _split(self, a: Availability, r: float) -> tuple[float, ...]:
        out, left = [], r
        for kw in a.flexible_kw:
            take = min(left, kw) if left > TOL_KW else 0.0
            out.append(take)
            left -= take
        return tuple(out)

    def _check_contracts(self, event: AdrEvent, loc: str, parts: list, received_ms: int, booking: _Booking) -> None:
        for i, tier in enumerate(self.flex.tiers):
            used = [j for j, p in enumerate(parts) if p[i] > TOL_KW]
            if not used:
                continue
            c = self.flex.contract(loc, tier)
            if c is None:
                raise OptOut(f"{loc} {tier}: no contract")
            notice_min = (event.intervals[used[0]].start_ms - received_ms) / 60_000
            if notice_min < c.min_notice_min - 1e-9:
                raise OptOut(f"{loc} {tier}: needs {c.min_notice_min:g} min notice, has {notice_min:g}")
            hours: dict[int, float] = {}
            events: dict[int, int] = {}
            for k, j in enumerate(used):
                itv = event.intervals[j]
                day = itv.start_ms // DAY_MS
                hours[day] = hours.get(day, 0.0) + itv.duration_ms / HOUR_MS
                prev = event.intervals[used[k - 1]] if k else None
                if prev is None or prev.end_ms != itv.start_ms or prev.start_ms // DAY_MS != day:
                    events[day] = events.get(day, 0) + 1
            for day in sorted(hours):
                h_used, e_used = self._used((loc, tier, day))
                if h_used + hours[day] > c.max_curtailment_h_per_day + 1e-9:
                    raise OptOut(f"{loc} {tier}: {hours[day]:g} h asked + {h_used:g} h booked exceed its "
                                 f"{c.max_curtailment_h_per_day:g} h of the day")
                if e_used + events[day] > c.max_events_per_day:
                    raise OptOut(f"{loc} {tier}: {events[day]} event(s) asked + {e_used} booked exceed its "
                                 f"{c.max_events_per_day} events of the day")
                booking.hours[(loc, tier, day)] = hours[day]
                booking.events[(loc, tier, day)] = events[day]
