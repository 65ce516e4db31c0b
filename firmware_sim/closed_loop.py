"""One closed loop over a real broker: the cloud controller service (in this process, its own
asyncio thread) + a gateway fleet (child processes), on a shared accelerated clock. Used by
`colorgrid demo`, `python -m bench.mqtt` and the end-to-end tests.

The result pairs, per controller round n, the goal the controller used at boundary n with the
ground truth the gateways measured at their round n (the round that applied vector n):

    t_s             = (boundary_n − origin) / 1000                     (simulated s)
    goal_kw         = goal of round n (sum over groups)
    achieved_kw     = Σ_gateways enabled kW (EF + ER) after their round n
    enabled_t{i}_kw = the same per tier

On an adaptive clock (`SimClock.adaptive`) a `SpeedGovernor` watches the loop while it runs
(a check every 0.25 s of wall time) and halves the clock's speed (down to `min_speed`) when it
falls behind. A check is behind when since the previous one: a controller round was missed (the
controller woke after the next boundary); some live gateway's last report was no longer fresh at
a boundary (a round late, or missing); gateways reported vectors rejected as expired; or at least
`late_share` of the gateway rounds ran late (more than half a round after they were due) or
without a fresh vector (the fleet's live counters, `FleetProcesses.progress`). `behind_checks`
of the last `window_checks` checks behind slow the clock; nothing is judged in the
`settle_rounds` and `settle_wall_s` after a start or a change (births still arriving, the
backlog of the faster speed draining: vectors of the old speed arriving expired).
Simulated time stays continuous, so every metric (computed on simulated time) stays valid.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from cloud.clock import SimClock
from cloud.metrics import MetricsError, pjm_score, rms_pct_of_capacity
from cloud.goals import FractionOfDemand
from cloud.rounds import ControllerCore
from cloud.service import ControllerService
from firmware_sim.gateway_fleet import FleetProcesses, FleetSpec, FleetStats, summarize

log = logging.getLogger("colorgrid.firmware_sim.closed_loop")


class ControllerThread:
    """A ControllerService running in its own thread and event loop."""

    def __init__(self, core: ControllerCore, host: str, port: int, clock: SimClock) -> None:
        self.service = ControllerService(core, host, port, clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="controller", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.service.run(self._stop)
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._started.set()

    def start(self, timeout_s: float = 10.0) -> "ControllerThread":
        self.thread.start()
        self._started.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.service.connected.is_set() and time.monotonic() < deadline and self.error is None:
            time.sleep(0.02)
        if not self.service.connected.is_set():
            self.stop()
            raise RuntimeError(f"controller did not connect to the broker ({self.error!r})")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)
        if self.error is not None:
            raise RuntimeError(f"controller failed: {self.error!r}") from self.error


class SpeedGovernor:
    """Halves an adaptive clock's speed when the loop falls behind it (module docstring)."""

    def __init__(self, clock: SimClock, min_speed: float = 1.0, window_checks: int = 6,
                 behind_checks: int = 3, late_share: float = 0.05, settle_rounds: int = 5,
                 settle_wall_s: float = 2.0, announce: Callable[[float, str], None] | None = None) -> None:
        if clock.shared is None:
            raise ValueError("clock: the speed governor needs an adaptive clock (SimClock.adaptive)")
        if not 0 < min_speed <= clock.speed:
            raise ValueError(f"min_speed: expected 0 < min_speed <= {clock.speed:g}, got {min_speed!r}")
        if not 1 <= behind_checks <= window_checks:
            raise ValueError("behind_checks: expected 1 <= behind_checks <= window_checks")
        self.clock = clock
        self.min_speed = float(min_speed)
        self.window_checks, self.behind_checks, self.late_share = window_checks, behind_checks, late_share
        self.settle_rounds, self.settle_wall_s = settle_rounds, settle_wall_s
        self.announce = announce
        self._t0 = time.monotonic()
        # every speed the run had: the first entry is the starting speed
        self.history: list[dict] = [{"t_sim_s": 0.0, "wall_s": 0.0, "speed": clock.speed, "why": "start"}]
        self.behind_checks_total = 0       # checks judged behind over the run
        self._window: deque = deque(maxlen=window_checks)
        self._last: tuple | None = None
        self._settle(None)

    def _settle(self, core: ControllerCore | None) -> None:
        self._window.clear()
        self._settle_wall = time.monotonic() + self.settle_wall_s
        self._settle_rounds_from = len(core.records) if core is not None else 0
        self._settled = False

    @staticmethod
    def _expired(core: ControllerCore) -> int:
        counts = dict(core.vectors_rejected_by_gateways)          # copied at once (other thread)
        return sum(v for key, v in counts.items() if key.startswith("expired"))

    def _late_reports(self, core: ControllerCore, since: int) -> int:
        """Rounds recorded from index `since` on in which some live gateway's report was not fresh."""
        per_round: dict[int, list[int]] = {}
        for rec in core.records[since:]:
            row = per_round.setdefault(rec.t_ms, [0, 0])
            row[0] += rec.n_live
            row[1] += rec.n_fresh
        return sum(1 for live, fresh in per_round.values() if live > 0 and fresh < live)

    def check(self, core: ControllerCore, service: ControllerService,
              fleet_progress: tuple[int, int, int] | None = None) -> float | None:
        """Judge the loop since the previous call (one check); returns the new speed when it
        slowed down. `fleet_progress`: the fleet's (rounds, late, without a fresh vector) so far."""
        now = (len(core.records), service.missed_rounds, self._expired(core),
               fleet_progress or (0, 0, 0))
        last, self._last = self._last, now
        if last is None:
            return None
        if not self._settled:
            boundaries = {rec.t_ms for rec in core.records[self._settle_rounds_from:]}
            self._settled = time.monotonic() >= self._settle_wall and len(boundaries) >= self.settle_rounds
        settled = self._settled
        if not settled:
            return None
        why = []
        if now[1] > last[1]:
            why.append("controller rounds missed")
        if now[2] > last[2]:
            why.append("vectors arrived expired")
        if self._late_reports(core, last[0]):
            why.append("reports late")
        rounds, late, unvectored = (n - o for n, o in zip(now[3], last[3]))
        if rounds > 0 and max(late, unvectored) >= self.late_share * rounds:
            why.append("gateway rounds late" if late >= unvectored else "gateway rounds without a fresh vector")
        if now[0] == last[0] and rounds == 0 and not why:
            return None                    # nothing ran since the last check: nothing to judge
        self._window.append(", ".join(why))
        behind = [w for w in self._window if w]
        if len(behind) < self.behind_checks:
            return None
        self.behind_checks_total += len(behind)
        speed = self.clock.speed
        new = max(self.min_speed, speed / 2.0)
        if new >= speed:
            self._settle(core)             # already at the floor: keep judging, nothing to do
            return None
        reasons = ", ".join(sorted({r for w in behind for r in w.split(", ")}))
        at_ms = self.clock.set_speed(new)
        self.history.append({"t_sim_s": (at_ms - self.clock.origin_ms) / 1000.0,
                             "wall_s": time.monotonic() - self._t0, "speed": new,
                             "why": f"{len(behind)} of the last {len(self._window)} checks behind: {reasons}"})
        if self.announce is not None:
            self.announce(new, self.history[-1]["why"])
        self._settle(core)
        return new

    def figures(self) -> dict:
        return {"speed_initial": self.history[0]["speed"], "speed_final": self.history[-1]["speed"],
                "speed_changes": len(self.history) - 1, "speed_history": list(self.history),
                "slowed_down": len(self.history) > 1}


class ClosedLoopResult:
    def __init__(self, core: ControllerCore, service: ControllerService, stats: FleetStats,
                 clock: SimClock, wall_s: float, k: int) -> None:
        self.core, self.service, self.stats, self.clock = core, service, stats, clock
        self.wall_s = wall_s
        self.k = k
        self.rows = self._rows()

    def _rows(self) -> list[list]:
        """[t_s, goal_kw, achieved_kw, demand_kw, gateways, enabled per tier...] per round."""
        per_round: dict[int, list] = {}
        rm = self.core.round_ms
        for rec in self.core.records:
            n = (rec.t_ms - self.clock.origin_ms) // rm
            row = per_round.setdefault(n, [rec.t_ms, 0.0])
            row[1] += rec.goal_kw
        rows = []
        for n in sorted(per_round):
            bucket = self.stats.buckets.get(n)
            if bucket is None:
                continue
            t_ms, goal = per_round[n]
            tiers = [w / 1000.0 for w in bucket[1:1 + self.k]]
            rows.append([(t_ms - self.clock.origin_ms) / 1000.0, goal, sum(tiers), bucket[-1] / 1000.0,
                         bucket[0]] + tiers)
        return rows

    def complete_rows(self, warmup_s: float) -> np.ndarray:
        """Rows after the warm-up in which every gateway reported (array)."""
        arr = np.asarray([r for r in self.rows if r[0] >= warmup_s and r[4] == self.stats.gateways], float)
        return arr.reshape(-1, 5 + self.k)

    def tracking(self, warmup_s: float, goal) -> dict:
        """RMS % of regulation capacity and the PJM-style score over the complete rows."""
        arr = self.complete_rows(warmup_s)
        out: dict = {"rounds_scored": int(arr.shape[0])}
        if arr.shape[0] < 2:
            return out
        t, g, a, demand = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
        if isinstance(goal, FractionOfDemand) and hasattr(goal.inner, "amplitude_kw"):
            base, amp = goal.inner.base_kw * demand, goal.inner.amplitude_kw * demand
        elif hasattr(goal, "amplitude_kw"):
            base, amp = np.full_like(g, goal.base_kw), np.full_like(g, abs(goal.amplitude_kw))
        else:
            base, amp = None, np.full_like(g, float(demand.mean()))
        capacity = float(amp.mean())
        out["capacity_kw"] = capacity
        out["rms_pct_of_capacity"] = rms_pct_of_capacity(g, a, capacity) if capacity > 0 else None
        out["mean_abs_error_kw"] = float(np.mean(np.abs(a - g)))
        if base is not None:
            try:
                score = pjm_score((g - base) / amp, (a - base) / amp, t)
                out.update(pjm_score=score.score, pjm_correlation=score.correlation,
                           pjm_delay=score.delay, pjm_precision=score.precision, pjm_windows=score.windows)
            except MetricsError as exc:
                out["pjm_note"] = str(exc)
        return out

    def figures(self) -> dict:
        s = summarize(self.stats)
        svc, core = self.service, self.core
        rounds = max(1, self.stats.metrics.get("rounds", 0))
        held = rounds - self.stats.metrics.get("vectors_applied", 0) - self.stats.metrics.get("fail_safe_rounds", 0)
        s.update({
            "controller_rounds": svc.rounds,
            "controller_missed_rounds": svc.missed_rounds,
            "gateway_rounds_held": held,
            "controller_round_compute_p50_ms": float(np.percentile(svc.round_compute_ms or [0.0], 50)),
            "controller_round_compute_p99_ms": float(np.percentile(svc.round_compute_ms or [0.0], 99)),
            "messages_to_controller": core.received,
            "messages_rejected_by_controller": sum(core.rejected.values()),
            "vectors_published": core.published,
            "vectors_delivered": self.stats.metrics.get("vectors_accepted", 0),
            "wall_s": self.wall_s,
        })
        s["messages_total"] = s["messages_to_controller"] + s["vectors_delivered"]
        s["messages_per_s"] = s["messages_total"] / self.wall_s if self.wall_s > 0 else 0.0
        return s


def run_closed_loop(host: str, port: int, spec: FleetSpec, core: ControllerCore, clock: SimClock,
                    duration_sim_s: float, processes: int = 1,
                    progress: Callable[[float, ControllerCore], None] | None = None,
                    governor: SpeedGovernor | None = None) -> ClosedLoopResult:
    """Start the fleet, then the controller; run `duration_sim_s` of simulated time; stop both.
    With a `governor` (adaptive clock) the speed may drop during the run (`governor.history`)."""
    t0 = time.monotonic()
    fleet = FleetProcesses(spec, processes).start()
    ctl = None
    try:
        ctl = ControllerThread(core, host, port, clock).start()
        end_ms = clock.now_ms() + int(duration_sim_s * 1000)
        while clock.now_ms() < end_ms:
            time.sleep(min(0.25, max(0.01, clock.wall_delay_s(end_ms))))
            if ctl.error is not None:
                raise RuntimeError(f"controller failed: {ctl.error!r}")
            if governor is not None:
                governor.check(core, ctl.service, fleet.progress())
            if progress is not None:
                progress(1.0 - (end_ms - clock.now_ms()) / (duration_sim_s * 1000.0), core)
        # one more round so the last vectors are applied and reported
        clock.sleep_until(clock.now_ms() + spec.round_ms)
    finally:
        stats = fleet.stop()
        if ctl is not None:
            ctl.stop()
    return ClosedLoopResult(core, ctl.service, stats, clock, time.monotonic() - t0, spec.k)
