"""Disturbances for the vectorized fleet: customer overrides and an imperfect report channel.

* `OverrideProcess`: customers force devices on. A device not in override starts one in a round
  with probability q = f / (1 - f) · round_s / D (f = wanted fraction in override, D = mean
  duration), duration D · U(0.5, 1.5); at start the fleet is pre-populated at the steady fraction
  with residual durations, so the fraction is ≈ f throughout.
* `ReportChannel`: the per-gateway reports on their way to the estimator: each lost with
  probability `loss`, multiplicative Gaussian measurement noise N(1, noise_std²) per entry
  (clipped at 0), sampling (gateway g reports only in rounds with (round + g) % sample_every == 0)
  and a delivery lag of `lag_rounds` rounds.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from firmware_sim.vector_fleet import VectorFleet


class DisturbanceError(ValueError):
    """Invalid disturbance parameter (message names it)."""


class OverrideProcess:
    def __init__(self, fraction: float, mean_duration_s: float, round_s: float, rng: np.random.Generator):
        if not 0.0 <= fraction < 1.0:
            raise DisturbanceError(f"override_fraction must be in [0, 1), got {fraction!r}")
        if not mean_duration_s > 0:
            raise DisturbanceError(f"override_duration_s must be > 0, got {mean_duration_s!r}")
        self.fraction = fraction
        self.mean_s = mean_duration_s
        self.q = fraction / (1.0 - fraction) * round_s / mean_duration_s
        self.rng = rng

    def _durations(self, n: int) -> np.ndarray:
        return self.mean_s * (0.5 + self.rng.random(n))

    def start(self, fleet: VectorFleet, t_s: float) -> None:
        """Pre-populate: a fraction f of devices already in override, residual U(0, 1)·duration."""
        if self.fraction <= 0:
            return
        chosen = np.flatnonzero(self.rng.random(fleet.n) < self.fraction)
        fleet.start_override(chosen, t_s + self.rng.random(chosen.size) * self._durations(chosen.size), t_s)

    def step(self, fleet: VectorFleet, t_s: float) -> int:
        """Start new overrides this round (before the fleet steps); returns how many."""
        if self.q <= 0:
            return 0
        free = fleet.override_until_s <= t_s
        new = np.flatnonzero(free & (self.rng.random(fleet.n) < self.q))
        if new.size:
            fleet.start_override(new, t_s + self._durations(new.size), t_s)
        return int(new.size)


class ReportChannel:
    def __init__(self, rng: np.random.Generator, loss: float = 0.0, noise_std: float = 0.0,
                 lag_rounds: int = 0, sample_every: int = 1):
        if not 0.0 <= loss < 1.0:
            raise DisturbanceError(f"report_loss must be in [0, 1), got {loss!r}")
        if not noise_std >= 0.0:
            raise DisturbanceError(f"noise_std must be >= 0, got {noise_std!r}")
        if lag_rounds < 0 or int(lag_rounds) != lag_rounds:
            raise DisturbanceError(f"lag_rounds must be an integer >= 0, got {lag_rounds!r}")
        if sample_every < 1:
            raise DisturbanceError(f"sample_every must be >= 1, got {sample_every!r}")
        self.rng = rng
        self.loss, self.noise_std = loss, noise_std
        self.lag_rounds, self.sample_every = int(lag_rounds), int(sample_every)
        self._queue: deque[tuple[int, np.ndarray, np.ndarray, int]] = deque()
        self.sent = 0
        self.lost = 0

    def send(self, round_idx: int, ts_ms: int, reports_kw: np.ndarray) -> None:
        """Reports of every gateway (G, k, 4) kW for round `round_idx`, stamped `ts_ms`."""
        g = reports_kw.shape[0]
        ids = np.arange(g)
        if self.sample_every > 1:
            ids = ids[(round_idx + ids) % self.sample_every == 0]
        if self.loss > 0:
            kept = self.rng.random(ids.size) >= self.loss
            self.lost += int(ids.size - kept.sum())
            ids = ids[kept]
        rep = reports_kw[ids]
        if self.noise_std > 0:
            rep = np.maximum(rep * (1.0 + self.noise_std * self.rng.standard_normal(rep.shape)), 0.0)
        self.sent += int(ids.size)
        self._queue.append((round_idx + self.lag_rounds, ids, rep, ts_ms))

    def deliver(self, round_idx: int):
        """Reports due by `round_idx`: list of (gateway ids, reports (m, k, 4), ts_ms)."""
        out = []
        while self._queue and self._queue[0][0] <= round_idx:
            _, ids, rep, ts = self._queue.popleft()
            out.append((ids, rep, ts))
        return out
