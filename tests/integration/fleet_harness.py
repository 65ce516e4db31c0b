"""Test harness: a FleetWorker on a thread, instrumented to record every vector each gateway
received (before its guard decides) and accepted, plus controller subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from cloud.clock import SimClock
from firmware_sim.gateway_fleet import FleetSpec, FleetWorker, make_devices

REPO = Path(__file__).resolve().parents[2]


class FleetThread:
    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.worker = FleetWorker(spec, 0, spec.gateways)
        self.seen: dict[str, list[int]] = {}
        self.accepted: dict[str, list[int]] = {}
        for agent in self.worker.agents:
            self._instrument(agent)
        self._stop = threading.Event()
        self.paused = threading.Event()   # set: the worker thread stops servicing anything
        run_once = self.worker.loop.run_once

        def pausable_run_once(timeout_s):
            while self.paused.is_set() and not self._stop.is_set():
                time.sleep(0.01)
            return run_once(timeout_s)
        self.worker.loop.run_once = pausable_run_once
        self.thread = threading.Thread(target=self.worker.run, args=(self._stop.is_set,), daemon=True)

    def _instrument(self, agent) -> None:
        gid = agent.gateway_id
        seen, accepted = self.seen.setdefault(gid, []), self.accepted.setdefault(gid, [])
        check = agent.guard.check

        def recording_check(msg, now_ms):
            seen.append(msg["round_id"])
            reason = check(msg, now_ms)
            if reason == "":
                accepted.append(msg["round_id"])
            return reason
        agent.guard.check = recording_check

    @property
    def agents(self):
        return self.worker.agents

    def start(self) -> "FleetThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)

    def wait_for(self, predicate, timeout_s: float) -> float:
        """Seconds until predicate(agents) held; raises AssertionError on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if predicate(self.agents):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout_s} s")

    def last_enabled_w(self) -> int:
        buckets = self.worker.stats.buckets
        for n in sorted(buckets, reverse=True):
            if buckets[n][0] == self.spec.gateways:
                return sum(buckets[n][1:1 + self.spec.k])
        return -1

    def total_w(self) -> int:
        return sum(d.rated_w for i in range(self.spec.gateways) for d in make_devices(self.spec, i))


def controller_proc(port: int, clock: SimClock, key_file: Path, db: Path | None, goal_kw: float,
                    round_s: float, log_path: Path, out: Path | None = None,
                    extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "colorgrid", "controller", "--broker", f"mqtt://127.0.0.1:{port}",
           "--hmac-key-file", str(key_file), "--goal", f"constant:{goal_kw}", "--round-s", str(round_s),
           "--clock", clock.spec(), "--log-level", "WARNING"]
    if db is not None:
        cmd += ["--db", str(db)]
    if out is not None:
        cmd += ["--out", str(out)]
    cmd += list(extra or [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    return proc
