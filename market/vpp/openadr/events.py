"""OpenADR 2.0b events as the VEN sees them, independent of the library that received them.

An `AdrEvent` is what the decision rules need from an `oadrDistributeEvent` event: its id and
modification number, status, targets (control groups = location ids), the ramp-up period and the
LOAD_DISPATCH signal's intervals (UTC epoch ms start, duration, value in kW):

    event = event_from_dict(openleadr_event_dict)        # EventError naming the field otherwise

Signal semantics (OpenADR 2.0b signal LOAD_DISPATCH, item base powerReal):

- ``setpoint``: the value is the load wanted, kW (for several targets: their total);
- ``delta``: the value is the change of load wanted against what it would be without the event,
  kW; a reduction is negative (−30 = shed 30 kW). A positive delta (more load) is not offered.

The unit is kW unless the signal carries a measurement (`unit` W with `scale` none/k/M);
a ``dtstart`` must be timezone-aware (UTC on the wire). openleadr parses numeric-looking target ids
into numbers (``671.1`` arrives as the float 671.1): `_target_id` turns them back into the string
(a node number ending in 0, e.g. ``632.10``, cannot be told from ``632.1``; name such places with a
bus that is not numeric).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from vocab.location import LocationError, normalize

LOAD_DISPATCH = "LOAD_DISPATCH"
SETPOINT = "setpoint"
DELTA = "delta"
SIGNAL_TYPES = (SETPOINT, DELTA)
CANCELLED = "cancelled"
COMPLETED = "completed"
TARGET_KEYS = ("resource_id", "group_id")        # the target types that name control groups
_SCALE_TO_KW = {"none": 1e-3, "k": 1.0, "M": 1e3}


class EventError(ValueError):
    """An event the VEN cannot read (the message names the field)."""


@dataclass(frozen=True)
class AdrInterval:
    start_ms: int
    duration_ms: int
    value_kw: float

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms


@dataclass(frozen=True)
class AdrEvent:
    event_id: str
    modification_number: int
    status: str                          # far, near, active, completed, cancelled
    signal_type: str                     # setpoint or delta
    intervals: tuple[AdrInterval, ...]   # in time order, contiguous or not
    targets: tuple[str, ...]             # location ids; empty: the whole VEN
    ramp_up_ms: int = 0
    market_context: str = ""

    @property
    def start_ms(self) -> int:
        return self.intervals[0].start_ms

    @property
    def end_ms(self) -> int:
        return max(i.end_ms for i in self.intervals)

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED


def epoch_ms(value: Any, field: str) -> int:
    if not isinstance(value, datetime):
        raise EventError(f"{field}: expected a date-time, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise EventError(f"{field}: a naive date-time (UTC is required on the wire)")
    return int(round(value.timestamp() * 1000))


def duration_ms(value: Any, field: str) -> int:
    if isinstance(value, timedelta):
        ms = int(round(value.total_seconds() * 1000))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        ms = int(round(value * 1000))           # seconds
    else:
        raise EventError(f"{field}: expected a duration, got {value!r}")
    if ms < 0:
        raise EventError(f"{field}: negative duration")
    return ms


def _target_id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EventError(f"{field}: expected a location id, got {value!r}")
    text = value if isinstance(value, str) else repr(value)
    try:
        return normalize(text)
    except LocationError as exc:
        raise EventError(f"{field}: {text!r} is not a location id ({exc})") from None


def _targets(event: Mapping) -> tuple[str, ...]:
    by_type = event.get("targets_by_type") or {}
    out: list[str] = []
    for key in TARGET_KEYS:
        values = by_type.get(key) or []
        values = values if isinstance(values, (list, tuple)) else [values]
        for i, v in enumerate(values):
            loc = _target_id(v, f"targets.{key}[{i}]")
            if loc not in out:
                out.append(loc)
    return tuple(out)


def _to_kw(signal: Mapping, field: str) -> float:
    m = signal.get("measurement")
    if not m:
        return 1.0
    unit = str(m.get("unit") or "W") if isinstance(m, Mapping) else "W"
    scale = str(m.get("scale") or "none") if isinstance(m, Mapping) else "none"
    if unit != "W" or scale not in _SCALE_TO_KW:
        raise EventError(f"{field}.measurement: expected unit W with scale none, k or M, got {unit} {scale}")
    return _SCALE_TO_KW[scale]


def _dispatch_signal(event: Mapping) -> tuple[int, Mapping]:
    signals = event.get("event_signals")
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals")
    if not isinstance(signals, (list, tuple)) or not signals:
        raise EventError("event_signals: none")
    found = [(i, s) for i, s in enumerate(signals) if isinstance(s, Mapping) and s.get("signal_name") == LOAD_DISPATCH]
    if not found:
        names = sorted({str(s.get("signal_name")) for s in signals if isinstance(s, Mapping)})
        raise EventError(f"event_signals: no {LOAD_DISPATCH} signal (found {', '.join(names)})")
    if len(found) > 1:
        raise EventError(f"event_signals: {len(found)} {LOAD_DISPATCH} signals, expected one")
    return found[0]


def event_from_dict(event: Mapping) -> AdrEvent:
    """An `AdrEvent` from openleadr's event dict (`on_event`'s argument)."""
    if not isinstance(event, Mapping):
        raise EventError("event: not a mapping")
    desc = event.get("event_descriptor") or {}
    event_id = desc.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError("event_descriptor.event_id: missing")
    mod = desc.get("modification_number", 0)
    if isinstance(mod, bool) or not isinstance(mod, int) or mod < 0:
        raise EventError(f"event_descriptor.modification_number: expected an integer >= 0, got {mod!r}")
    status = str(desc.get("event_status") or "far")
    k, signal = _dispatch_signal(event)
    field = f"event_signals[{k}]"
    signal_type = signal.get("signal_type")
    if signal_type not in SIGNAL_TYPES:
        raise EventError(f"{field}.signal_type: {signal_type!r} not supported (setpoint or delta)")
    scale = _to_kw(signal, field)
    raw = signal.get("intervals")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise EventError(f"{field}.intervals: none")
    intervals = []
    for j, itv in enumerate(raw):
        where = f"{field}.intervals[{j}]"
        if not isinstance(itv, Mapping):
            raise EventError(f"{where}: not a mapping")
        value = itv.get("signal_payload")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EventError(f"{where}.signal_payload: expected a finite number, got {value!r}")
        dur = duration_ms(itv.get("duration"), where + ".duration")
        if dur == 0:
            raise EventError(f"{where}.duration: zero (open-ended intervals are not supported)")
        intervals.append(AdrInterval(epoch_ms(itv.get("dtstart"), where + ".dtstart"), dur, float(value) * scale))
    intervals.sort(key=lambda i: i.start_ms)
    for a, b in zip(intervals, intervals[1:]):
        if b.start_ms < a.end_ms:
            raise EventError(f"{field}.intervals: overlapping intervals at {b.start_ms}")
    period = event.get("active_period") or {}
    # openleadr names x-eiRampUp "ramp_up" when parsing, "ramp_up_period" when building an event
    ramp = (period.get("ramp_up_period", period.get("ramp_up")) if isinstance(period, Mapping) else None)
    if isinstance(ramp, Mapping):
        ramp = ramp.get("duration")
    ramp_ms = duration_ms(ramp, "active_period.ramp_up_period") if ramp is not None else 0
    return AdrEvent(event_id, mod, status, signal_type, tuple(intervals), _targets(event), ramp_ms,
                    str(desc.get("market_context") or ""))
