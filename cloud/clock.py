"""Shared (optionally accelerated) clock for the controller and simulated fleets.

    sim_ms(t) = origin_ms + (wall_ms(t) − origin_ms) · speed

`wall_ms` is UTC epoch ms (`time.time()`), so every process given the same `origin_ms` and
`speed` agrees on simulated time without talking to each other. `speed = 1` is real time (the
production setting: sim_ms is UTC epoch ms); `speed = 10` runs a 2-s round every 0.2 s of wall
time. Timers, expiries and fail-safe periods are all expressed in simulated ms.

An adaptive clock (`SimClock.adaptive`) keeps its speed in a `SharedSpeed`: a small
multiprocessing array, handed to spawned children (fleet workers) as a Process argument, that
holds the clock's current anchor. Changing the speed at wall time w re-anchors it there:

    sim_ms(t) = anchor_sim_ms + (wall_ms(t) − anchor_wall_ms) · speed,
    anchor_sim_ms := sim_ms(w) at the old speed,  anchor_wall_ms := w

so simulated time is continuous across the change. Every reading takes the array's lock and reads
the wall clock inside it, so the readings of all processes are ordered by that lock and never
run backwards (each process also keeps its last reading as a floor against wall-clock steps).
Round boundaries stay origin_ms + n · round_ms in simulated time, at any speed.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time

MAX_SPEED = 1000.0
# longest single sleep of an adaptive clock: a speed change is noticed within this many wall s
_ADAPTIVE_SLEEP_CHUNK_S = 0.1


class ClockError(ValueError):
    """Bad clock parameters (field named in the message)."""


def _check_speed(speed) -> float:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= MAX_SPEED:
        raise ClockError(f"speed: expected 0 < speed <= {MAX_SPEED:g}, got {speed!r}")
    return float(speed)


class SharedSpeed:
    """The speed and anchor of an adaptive clock, shared by processes:
    [origin_ms, anchor_wall_ms, anchor_sim_ms, speed, changes] in a lock-protected
    multiprocessing Array. Pass it to `spawn` children as a Process argument (multiprocessing
    refuses to pickle it any other way)."""

    def __init__(self, speed: float, origin_ms: int, ctx=None) -> None:
        speed = _check_speed(speed)
        ctx = ctx or mp.get_context("spawn")
        self._arr = ctx.Array("d", [float(origin_ms), float(origin_ms), float(origin_ms), speed, 0.0])

    @property
    def origin_ms(self) -> int:
        return int(self._arr[0])

    def now_ms(self) -> float:
        """Simulated ms now (float), the wall clock read under the lock."""
        with self._arr.get_lock():
            aw, asim, speed = self._arr[1], self._arr[2], self._arr[3]
            wall = time.time() * 1000.0
        return asim + (wall - aw) * speed

    @property
    def speed(self) -> float:
        return self._arr[3]

    @property
    def changes(self) -> int:
        return int(self._arr[4])

    def set_speed(self, speed: float) -> float:
        """Re-anchor at the current instant and run at `speed` from here; returns the simulated ms
        of the change."""
        speed = _check_speed(speed)
        with self._arr.get_lock():
            aw, asim, old = self._arr[1], self._arr[2], self._arr[3]
            wall = time.time() * 1000.0
            sim = asim + (wall - aw) * old
            self._arr[1], self._arr[2], self._arr[3] = wall, sim, speed
            self._arr[4] += 1.0
        return sim


class SimClock:
    def __init__(self, speed: float = 1.0, origin_ms: int | None = None,
                 shared: SharedSpeed | None = None) -> None:
        self._shared = shared
        if shared is not None:
            if origin_ms is not None and int(origin_ms) != shared.origin_ms:
                raise ClockError(f"clock: origin {origin_ms} is not the shared clock's {shared.origin_ms}")
            self._speed = shared.speed
            self.origin_ms = shared.origin_ms
        else:
            self._speed = _check_speed(speed)
            self.origin_ms = int(time.time() * 1000) if origin_ms is None else int(origin_ms)
        self._last_ms = self.origin_ms if shared is not None else None

    @classmethod
    def adaptive(cls, speed: float, origin_ms: int | None = None, ctx=None) -> "SimClock":
        """A clock whose speed `set_speed` can change, in this process and in every process the
        clock's `shared` was handed to."""
        origin = int(time.time() * 1000) if origin_ms is None else int(origin_ms)
        return cls(shared=SharedSpeed(speed, origin, ctx))

    @property
    def shared(self) -> SharedSpeed | None:
        return self._shared

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second, now."""
        return self._shared.speed if self._shared is not None else self._speed

    def set_speed(self, speed: float) -> int:
        """Change the speed of an adaptive clock (re-anchored now: simulated time continuous);
        returns the simulated ms of the change."""
        if self._shared is None:
            raise ClockError("clock: set_speed needs an adaptive clock (SimClock.adaptive)")
        return int(self._shared.set_speed(speed))

    def now_ms(self) -> int:
        if self._shared is not None:
            now = max(self._last_ms, int(self._shared.now_ms()))
            self._last_ms = now
            return now
        wall = time.time() * 1000.0
        return int(self.origin_ms + (wall - self.origin_ms) * self._speed)

    def __call__(self) -> int:
        return self.now_ms()

    def wall_delay_s(self, sim_ms: int) -> float:
        """Wall seconds until simulated time `sim_ms` at the current speed (0 when already past)."""
        return max(0.0, (sim_ms - self.now_ms()) / 1000.0 / self.speed)

    def sleep_until(self, sim_ms: int) -> None:
        if self._shared is None:
            delay = self.wall_delay_s(sim_ms)
            if delay > 0:
                time.sleep(delay)
            return
        while (delay := self.wall_delay_s(sim_ms)) > 0:   # the speed may change meanwhile
            time.sleep(min(delay, _ADAPTIVE_SLEEP_CHUNK_S))

    async def asleep_until(self, sim_ms: int) -> None:
        if self._shared is None:
            delay = self.wall_delay_s(sim_ms)
            if delay > 0:
                await asyncio.sleep(delay)
            return
        while (delay := self.wall_delay_s(sim_ms)) > 0:
            await asyncio.sleep(min(delay, _ADAPTIVE_SLEEP_CHUNK_S))

    def spec(self) -> str:
        """'speed@origin_ms' — hand this to another process (fleet children, a controller). An
        adaptive clock's spec is only its starting point: such a process follows later speed
        changes only when given the clock's `shared` too (`from_spec(text, shared)`)."""
        if self._shared is not None and self._shared.changes:
            raise ClockError("clock: the adaptive clock's speed changed; SPEED@ORIGIN_MS no longer "
                             "describes it (hand over its shared speed)")
        return f"{self.speed!r}@{self.origin_ms}"

    @classmethod
    def from_spec(cls, text: str, shared: SharedSpeed | None = None) -> "SimClock":
        try:
            speed, origin = text.split("@")
            speed_f, origin_ms = float(speed), int(origin)
        except ValueError as exc:
            raise ClockError(f"clock: expected SPEED@ORIGIN_MS, got {text!r}") from exc
        if shared is not None:
            return cls(origin_ms=origin_ms, shared=shared)
        return cls(speed_f, origin_ms)
