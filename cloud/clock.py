"""Shared (optionally accelerated) clock for the controller and simulated fleets.

    sim_ms(t) = origin_ms + (wall_ms(t) − origin_ms) · speed

`wall_ms` is UTC epoch ms (`time.time()`), so every process given the same `origin_ms` and
`speed` agrees on simulated time without talking to each other. `speed = 1` is real time (the
production setting: sim_ms is UTC epoch ms); `speed = 10` runs a 2-s round every 0.2 s of wall
time. Timers, expiries and fail-safe periods are all expressed in simulated ms.
"""
from __future__ import annotations

import asyncio
import time


class ClockError(ValueError):
    """Bad clock parameters (field named in the message)."""


class SimClock:
    def __init__(self, speed: float = 1.0, origin_ms: int | None = None) -> None:
        if not isinstance(speed, (int, float)) or not 0 < speed <= 1000:
            raise ClockError(f"speed: expected 0 < speed <= 1000, got {speed!r}")
        self.speed = float(speed)
        self.origin_ms = int(time.time() * 1000) if origin_ms is None else int(origin_ms)

    def now_ms(self) -> int:
        wall = time.time() * 1000.0
        return int(self.origin_ms + (wall - self.origin_ms) * self.speed)

    def __call__(self) -> int:
        return self.now_ms()

    def wall_delay_s(self, sim_ms: int) -> float:
        """Wall seconds until simulated time `sim_ms` (0 when already past)."""
        return max(0.0, (sim_ms - self.now_ms()) / 1000.0 / self.speed)

    def sleep_until(self, sim_ms: int) -> None:
        delay = self.wall_delay_s(sim_ms)
        if delay > 0:
            time.sleep(delay)

    async def asleep_until(self, sim_ms: int) -> None:
        delay = self.wall_delay_s(sim_ms)
        if delay > 0:
            await asyncio.sleep(delay)

    def spec(self) -> str:
        """'speed@origin_ms' — hand this to another process (fleet children, a controller)."""
        return f"{self.speed!r}@{self.origin_ms}"

    @classmethod
    def from_spec(cls, text: str) -> "SimClock":
        try:
            speed, origin = text.split("@")
            return cls(float(speed), int(origin))
        except ValueError as exc:
            raise ClockError(f"clock: expected SPEED@ORIGIN_MS, got {text!r}") from exc
