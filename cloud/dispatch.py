"""Dispatched goals: signed goal schedules a dispatcher (the VPP, a market, an operator) sends the
controller per control group, over MQTT or in process.

    payload = make_dispatch("bus1.a", dispatch_id=7, points=[(t0_ms, 40.0), (t1_ms, 35.5)],
                            issued_ts_ms=now, valid_until_ts_ms=t1_ms + 300_000, key_id="vpp", key=k)
    goal = DispatchGoal(keys, fallback=ConstantGoal(50.0))
    reason = goal.offer("bus1.a", payload, now_ms)        # "" when accepted, else why not
    goal.goal_kw("bus1.a", t_ms)                           # a GoalSchedule like any other
    goal.source("bus1.a", t_ms)                            # "dispatch" or "fallback"
    publish_dispatch("mqtt://127.0.0.1:1883", "bus1.a", payload)   # a dispatcher's side, over MQTT

Topic ``colorgrid/v1/dispatch/{group}`` (retained, QoS 1; dispatcher -> controller; gateways never
read it). Payload (canonical JSON, HMAC-SHA256 over the fields without ``sig``, floats signed as
integer millionths like the control vector):

    {"v": 1, "group": str, "dispatch_id": int, "issued_ts_ms": int, "valid_until_ts_ms": int,
     "points": [[ts_ms, goal_kw], ...], "key_id": str, "sig": hex}

The schedule is piecewise constant: from each point's ``ts_ms`` its ``goal_kw`` (total enabled kW
wanted, >= 0) holds until the next point, the last one until ``valid_until_ts_ms``. Before the
first point and from ``valid_until_ts_ms`` on the group has no dispatch and the controller follows
the fallback schedule (e.g. no shedding); a dispatcher that goes silent therefore cannot leave a
group shed for ever. A newer ``dispatch_id`` for a group replaces the whole schedule; an older or
equal one is a replay and is rejected, as are schedules already expired, issued in the future,
with a bad signature or a malformed field (the reason names the field). Rejections never change
the schedule in force.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cloud.goals import SOURCE_DISPATCH, SOURCE_FALLBACK, GoalError, GoalSchedule
from edge_agent import codec, security, topics

MAX_POINTS = 2_880            # one day at 30-s resolution
MAX_GOAL_KW = 1e9
CLOCK_SKEW_MS = 5_000         # how far in the future `issued_ts_ms` may lie


class DispatchError(ValueError):
    """A dispatch message that cannot be accepted (message names the field)."""


@dataclass(frozen=True)
class DispatchSchedule:
    group: str
    dispatch_id: int
    issued_ts_ms: int
    valid_until_ts_ms: int
    points: tuple[tuple[int, float], ...]
    key_id: str

    def goal_kw_at(self, t_ms: int) -> float | None:
        """The dispatched kW at t_ms, None outside [first point, valid_until)."""
        if t_ms < self.points[0][0] or t_ms >= self.valid_until_ts_ms:
            return None
        lo, hi = 0, len(self.points) - 1          # last point with ts <= t_ms
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.points[mid][0] <= t_ms:
                lo = mid
            else:
                hi = mid - 1
        return self.points[lo][1]


def _fields(group: str, dispatch_id: int, points, issued_ts_ms: int, valid_until_ts_ms: int,
            key_id: str) -> dict:
    return {"v": 1, "group": group, "dispatch_id": int(dispatch_id), "issued_ts_ms": int(issued_ts_ms),
            "valid_until_ts_ms": int(valid_until_ts_ms),
            "points": [[int(ts), float(kw)] for ts, kw in points], "key_id": key_id}


def make_dispatch(group: str, dispatch_id: int, points, issued_ts_ms: int, valid_until_ts_ms: int,
                  key_id: str, key: bytes) -> bytes:
    """Encode and sign a dispatch (the dispatcher's one call); validated like a received one."""
    fields = _fields(group, dispatch_id, points, issued_ts_ms, valid_until_ts_ms, key_id)
    check_dispatch(dict(fields, sig=""))          # before signing: NaN or a bad id never gets signed
    return codec.dumps(security.sign(fields, key))


def _goal(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DispatchError(f"{field}: not a number")
    if isinstance(value, int) and abs(value) > MAX_GOAL_KW:      # also ints too big for a float
        raise DispatchError(f"{field}: out of range [0, {MAX_GOAL_KW:g}] kW")
    if not math.isfinite(value) or not 0.0 <= value <= MAX_GOAL_KW:
        raise DispatchError(f"{field}: out of range [0, {MAX_GOAL_KW:g}] kW")
    return float(value)


def check_dispatch(msg: dict) -> DispatchSchedule:
    """Validate the fields of a decoded dispatch (not its signature)."""
    try:
        codec.check_fields(msg, ("v", "group", "dispatch_id", "issued_ts_ms", "valid_until_ts_ms", "points",
                          "key_id", "sig"), ())
        if msg["v"] != 1:
            raise DispatchError("v: unsupported version " + repr(msg["v"]))
        group = codec.check_id(msg["group"], "group")
        did = codec.check_int(msg["dispatch_id"], "dispatch_id", 0, 2 ** 53)
        issued = codec.check_ts(msg["issued_ts_ms"], "issued_ts_ms")
        until = codec.check_ts(msg["valid_until_ts_ms"], "valid_until_ts_ms")
        key_id = codec.check_id(msg["key_id"], "key_id")
        raw = codec.check_list(msg["points"], "points", 1, MAX_POINTS)
    except codec.CodecError as exc:
        raise DispatchError(str(exc)) from None
    points = []
    for i, p in enumerate(raw):
        field = f"points[{i}]"
        if not isinstance(p, list) or len(p) != 2:
            raise DispatchError(f"{field}: not a [ts_ms, goal_kw] pair")
        try:
            ts = codec.check_ts(p[0], field + ".ts_ms")
        except codec.CodecError as exc:
            raise DispatchError(str(exc)) from None
        if points and ts <= points[-1][0]:
            raise DispatchError(f"{field}.ts_ms: not after the previous point")
        points.append((ts, _goal(p[1], field + ".goal_kw")))
    if until <= points[-1][0]:
        raise DispatchError("valid_until_ts_ms: not after the last point")
    return DispatchSchedule(group, did, issued, until, tuple(points), key_id)


def decode_dispatch(payload: Any, keys: dict) -> DispatchSchedule:
    """Parse, validate and verify a dispatch payload; DispatchError naming the field otherwise."""
    try:
        msg = codec.loads(payload)
    except codec.CodecError as exc:
        raise DispatchError(str(exc)) from None
    sched = check_dispatch(msg)
    reason = security.verify(msg, keys)
    if reason:
        raise DispatchError("sig: " + reason)
    return sched


class DispatchInbox(Protocol):
    """What the controller hands a received dispatch to (a `DispatchGoal`, or a test fake)."""

    def offer(self, group: str, payload: Any, now_ms: int) -> str:
        """Take a dispatch for `group`; "" when accepted, else the reason (names the field)."""
        ...


class DispatchGoal(GoalSchedule):
    """GoalSchedule fed by dispatches; groups without a dispatch in force follow `fallback`.

    `fallback` is any GoalSchedule (e.g. a `FractionOfDemand`, evaluated against the demand_kw the
    round passes on); None means "no goal": `goal_kw` then raises GoalError and the controller
    sends no vector for that group that round (gateways hold, then fail safe). `source` tells
    "dispatch" while a dispatch is in force for the group, else "fallback".
    Thread-safe: `offer` may run on the MQTT thread while rounds read goals.
    """

    def __init__(self, keys: dict, fallback: GoalSchedule | None = None, clock_skew_ms: int = CLOCK_SKEW_MS) -> None:
        self.keys = dict(keys)
        self.fallback = fallback
        self.clock_skew_ms = int(clock_skew_ms)
        self.schedules: dict[str, DispatchSchedule] = {}
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()

    def offer(self, group: str, payload: Any, now_ms: int) -> str:
        """Accept a dispatch for `group` (the topic's group); returns "" or the rejection reason."""
        try:
            sched = decode_dispatch(payload, self.keys)
            self._admit(group, sched, now_ms)
        except Exception as exc:   # DispatchError; anything else is a bug that must not stop rounds
            reason = str(exc) if isinstance(exc, DispatchError) else f"internal: {exc!r}"
            key = reason.split(":")[0]
            with self._lock:
                self.rejected[key] = self.rejected.get(key, 0) + 1
            return reason
        return ""

    def _admit(self, group: str, sched: DispatchSchedule, now_ms: int) -> None:
        if sched.group != group:
            raise DispatchError(f"group: {sched.group!r} sent on the topic of {group!r}")
        if sched.valid_until_ts_ms <= now_ms:
            raise DispatchError("valid_until_ts_ms: expired")
        if sched.issued_ts_ms > now_ms + self.clock_skew_ms:
            raise DispatchError("issued_ts_ms: in the future")
        with self._lock:
            held = self.schedules.get(group)
            if held is not None and sched.dispatch_id <= held.dispatch_id:
                raise DispatchError(f"dispatch_id: replay ({sched.dispatch_id} <= {held.dispatch_id} in force)")
            self.schedules[group] = sched
            self.accepted += 1

    def active(self, group: str, t_ms: int) -> float | None:
        """The dispatched kW for `group` at t_ms, None when no dispatch is in force."""
        with self._lock:
            sched = self.schedules.get(group)
        return None if sched is None else sched.goal_kw_at(t_ms)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        value = self.active(group, t_ms)
        if value is not None:
            return value
        if self.fallback is None:
            raise GoalError(f"group {group!r}: no dispatch in force at {t_ms} and no fallback goal")
        return float(self.fallback.goal_kw(group, t_ms, demand_kw))

    def source(self, group: str, t_ms: int) -> str:
        return SOURCE_DISPATCH if self.active(group, t_ms) is not None else SOURCE_FALLBACK


class PublishError(RuntimeError):
    """A dispatch could not be delivered to the broker (message names the broker URL)."""


def publish_dispatch(url: str, group: str, payload: bytes, username: str | None = None,
                     password: str | None = None, timeout_s: float = 10.0) -> None:
    """Publish a signed dispatch for `group`, retained and QoS 1, and wait for the broker's PUBACK
    (a controller that starts later still gets it). PublishError when the broker is unreachable
    or does not acknowledge within `timeout_s`."""
    import paho.mqtt.client as mqtt
    from cloud.service import parse_broker_url

    host, port = parse_broker_url(url)[:2]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dispatch-{int(time.time() * 1000)}")
    if username:
        client.username_pw_set(username, password)
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise PublishError(f"{url}: {exc}") from None
    client.loop_start()
    try:
        info = client.publish(topics.dispatch(group), payload, qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise PublishError(f"{url}: no PUBACK within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
