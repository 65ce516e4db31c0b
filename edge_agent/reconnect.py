"""The one reconnect policy: capped exponential backoff with jitter.

    delay_n = min(cap_ms, base_ms * 2**n) * (1/2 + U(0, 1/2))      n = failed attempts so far

("equal jitter": never less than half the nominal delay, so a fleet that lost its broker at the
same instant spreads its reconnects over the upper half of each step instead of stampeding).
U comes from the project PRNG (any object with ``random() -> float in [0, 1)``), so CPython and
MicroPython draw the same delays for the same seed. ``success()`` resets n to 0.
What a (re)connect must do — subscribe again, publish birth, flush the store — is the agent's
``_on_connected`` (runtime.py); this module only says *when* to try. MicroPython-compatible.
"""


class Backoff:
    def __init__(self, rng, base_ms: int = 500, cap_ms: int = 30000) -> None:
        if base_ms <= 0 or cap_ms < base_ms:
            raise ValueError("backoff: need 0 < base_ms <= cap_ms")
        self.rng = rng
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.attempts = 0
        self.next_try_ms = 0

    def nominal_ms(self) -> int:
        """min(cap, base * 2**attempts), without jitter."""
        delay = self.base_ms
        for _ in range(self.attempts):
            delay *= 2
            if delay >= self.cap_ms:
                return self.cap_ms
        return delay

    def failure(self, now_ms: int) -> int:
        """Record a failed attempt at now_ms; returns the delay (ms) before the next one."""
        nominal = self.nominal_ms()
        delay = int(nominal * (0.5 + 0.5 * self.rng.random()))
        self.attempts += 1
        self.next_try_ms = now_ms + delay
        return delay

    def success(self) -> None:
        self.attempts = 0
        self.next_try_ms = 0

    def due(self, now_ms: int) -> bool:
        return now_ms >= self.next_try_ms
