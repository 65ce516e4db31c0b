"""The VEN's core, independent of the OpenADR library: event in → decision → goals (and signed
dispatches) out; telemetry values for the reports; a record of everything for the run's files.

    ven = Ven(FlexibilityMapper(StatsFlexibility(portfolio, stats)), AdrGoal(no_shed), fleet=RoundsFleetState(...),
              publisher=MqttPublisher("mqtt://127.0.0.1:1883", key_id, key))
    opt = ven.handle_event(event_dict, received_ms).opt      # "optIn" / "optOut", reason logged
    ven.report_kw("671.1", now_ms, 10_000)                   # achieved kW over the last 10 s, or None

`client.OpenleadrVen` wires this to openleadr's `OpenADRClient` (the only module that imports
openleadr). A `Publisher` takes each location's signed schedule (`cloud.dispatch`, topic
`colorgrid/v1/dispatch/<location>`) for the controller's `--goal dispatch`; the controller never
sees where a goal came from beyond its source. When an event is withdrawn (cancelled, or an update
opted out) a location whose schedule was published gets a schedule of its no-shed kW until the
withdrawn schedule's end, which replaces the retained one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from market.vpp.openadr.decide import Decision, EventMapper
from market.vpp.openadr.events import EventError, event_from_dict
from market.vpp.openadr.fleet import FleetState
from market.vpp.openadr.goal import AdrGoal

log = logging.getLogger("colorgrid.vpp.ven")


class Publisher(Protocol):
    def publish(self, location: str, payload: bytes) -> None:
        """Deliver one location's signed schedule (raise on failure)."""
        ...


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, location: str, payload: bytes) -> None:
        self.sent.append((location, payload))


class MqttPublisher:
    """Retained QoS-1 publication through `cloud.dispatch.publish_dispatch` (blocking)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url, float(timeout_s)

    def publish(self, location: str, payload: bytes) -> None:
        from cloud.dispatch import publish_dispatch

        publish_dispatch(self.url, location, payload, timeout_s=self.timeout_s)


@dataclass
class Signer:
    key_id: str
    key: bytes


@dataclass
class VenRecord:
    """What happened, as rows for events.csv, goals.csv and reports.csv."""

    events: list[dict] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    published: int = 0
    publish_errors: list[str] = field(default_factory=list)


def _event_id(event: object) -> str:
    try:
        return str(event["event_descriptor"]["event_id"])          # type: ignore[index]
    except (KeyError, TypeError):
        return ""


class Ven:
    """Event → decision → goals; telemetry for reports (module docstring)."""

    def __init__(self, mapper: EventMapper, goal: AdrGoal, fleet: FleetState | None = None,
                 publisher: Publisher | None = None, signer: Signer | None = None,
                 tiers: Sequence[str] = (), clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)):
        if publisher is not None and signer is None:
            raise ValueError("publisher: a signing key is needed to publish dispatches")
        self.mapper, self.goal, self.fleet = mapper, goal, fleet
        self.publisher, self.signer, self.clock_ms = publisher, signer, clock_ms
        self.tiers = tuple(tiers)          # sheddable tiers, for the goals.csv columns
        self.record = VenRecord()
        self._published_until: dict[str, int] = {}
        self.unpublished = False
        self._last_dispatch_id = 0

    def handle_event(self, event_dict: Mapping, received_ms: int | None = None, publish: bool = True) -> Decision:
        """Decide on one event (new, updated or cancelled), apply it to the goals and publish
        (with publish=False the caller calls `publish_goals` later, e.g. from a worker thread)."""
        now = self.clock_ms() if received_ms is None else int(received_ms)
        try:
            event = event_from_dict(event_dict)
        except EventError as exc:
            decision = Decision(_event_id(event_dict), 0, False, f"unreadable event: {exc}")
            self._log(decision, None, now)
            return decision
        decision = self.mapper.decide(event, now)
        self.unpublished |= self.goal.apply(decision)
        self._log(decision, event, now)
        if publish:
            self.publish_goals(now)
        return decision

    def publish_goals(self, now: int) -> None:
        """Publish every location's schedule if the goals changed since the last publication."""
        if self.publisher is not None and self.unpublished:
            self.unpublished = False
            self._publish(now)

    def _log(self, decision: Decision, event, now: int) -> None:
        level = logging.INFO if decision.opt_in else logging.WARNING
        log.log(level, "event %s (modification %s): %s: %s", decision.event_id, decision.modification_number,
                decision.opt, decision.reason)
        self.record.events.append({
            "received_ms": now, "event_id": decision.event_id, "modification_number": decision.modification_number,
            "status": event.status if event else "", "signal_type": event.signal_type if event else "",
            "targets": " ".join(event.targets) if event else "", "start_ms": event.start_ms if event else None,
            "end_ms": event.end_ms if event else None, "intervals": len(event.intervals) if event else 0,
            "ramp_up_ms": event.ramp_up_ms if event else 0, "opt": decision.opt, "reason": decision.reason,
            "requested_kw_max": max(decision.requested_kw, default=0.0) + 0.0,
            "flexible_kw_min": min(decision.flexible_kw) if decision.flexible_kw else None})
        tiers = self.tiers
        for g in decision.goals:
            row = {"event_id": decision.event_id, "modification_number": decision.modification_number,
                   "location": g.location, "start_ms": g.start_ms, "end_ms": g.end_ms, "baseline_kw": g.baseline_kw,
                   "reduction_kw": g.reduction_kw, "goal_kw": g.goal_kw}
            row.update({f"{t}_kw": kw for t, kw in zip(tiers, g.tier_kw)})
            self.record.goals.append(row)

    def _publish(self, now: int) -> None:
        dispatch_id = max(self._last_dispatch_id + 1, now)
        self._last_dispatch_id = dispatch_id
        payloads = self.goal.payloads(now, dispatch_id, self.signer.key_id, self.signer.key)
        from cloud.dispatch import make_dispatch

        for loc, until in sorted(self._published_until.items()):
            if loc not in payloads and until > now:     # withdrawn: nothing shed until the old end
                kw = float(self.goal.no_shed_kw.get(loc, 0.0))
                payloads[loc] = make_dispatch(loc, dispatch_id, [(now, kw)], now, until, self.signer.key_id,
                                              self.signer.key)
        for loc, payload in sorted(payloads.items()):
            try:
                self.publisher.publish(loc, payload)
            except Exception as exc:   # PublishError, OSError: logged and recorded, the VEN keeps running
                msg = f"{loc}: {' '.join(str(exc).split())}"
                log.error("publish failed: %s", msg)
                self.record.publish_errors.append(msg)
                continue
            self.record.published += 1
            found = self.goal.points(loc, now)
            self._published_until[loc] = found[1] if found else now

    def report_kw(self, location: str, now_ms: int, span_ms: int) -> float | None:
        """Achieved kW at `location` over [now − span, now) from the fleet state; recorded."""
        kw = self.fleet.mean_kw(location, now_ms - span_ms, now_ms) if self.fleet is not None else None
        if kw is not None:
            try:
                goal = self.goal.goal_kw(location, now_ms)
                source = self.goal.source(location, now_ms)
            except Exception:   # GoalError: no event and no fallback
                goal, source = None, ""
            self.record.reports.append({"ts_ms": now_ms, "location": location, "achieved_kw": kw,
                                        "goal_kw": goal, "source": source})
        return kw

    def achieved_per_goal(self) -> list[dict]:
        """goals.csv rows with the achieved kW over each interval (empty without fleet state)."""
        out = []
        for row in self.record.goals:
            kw = (self.fleet.mean_kw(row["location"], row["start_ms"], row["end_ms"])
                  if self.fleet is not None else None)
            out.append(dict(row, achieved_kw=kw))
        return out
