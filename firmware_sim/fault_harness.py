"""Pieces for fault experiments on loopback (`python -m bench.faults`): a mosquitto child running
the lab configuration of deploy/mosquitto as is (its port and paths swapped), a gateway fleet on a
thread of this process that records every vector each gateway received (before its guard
decides), accepted and every command it obeyed, and `colorgrid controller` child processes.

    broker = LabMosquitto(users={"controller": "pw", "gw-00000": "pw0"}).start()
    fleet = RecordingFleet(spec).start()
    ctl = controller_proc(port, clock, key_file, db, goal_kw, round_s, log_path, out=folder)
    fleet.wait_for(lambda agents: all(not a.fail_safe for a in agents), 10.0)
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cloud.clock import SimClock
from firmware_sim.broker import BrokerError, MosquittoBroker
from firmware_sim.gateway_fleet import FleetSpec, FleetWorker, _worker_main, make_devices

REPO = Path(__file__).resolve().parents[1]
LAB_CONF = REPO / "deploy" / "mosquitto" / "colorgrid.conf"
LAB_ACL = REPO / "deploy" / "mosquitto" / "colorgrid.acl"


class LabMosquitto(MosquittoBroker):
    """deploy/mosquitto/colorgrid.conf + colorgrid.acl run as they are, except the listener (a
    free loopback port), the file paths, the log destination and the run-as user; `users` go to
    a password file made with `mosquitto_passwd -b`."""

    def __init__(self, users: dict[str, str], port: int | None = None, workdir: str | None = None) -> None:
        super().__init__(port=port, persistence=True, workdir=workdir)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not os.access(tool, os.X_OK):
            raise BrokerError("mosquitto_passwd not found (apt-get install mosquitto)")
        passwd = self.workdir / "passwd"
        passwd.write_text("")
        for user, password in sorted(users.items()):
            subprocess.run([tool, "-b", str(passwd), user, password], check=True, capture_output=True)
        (self.workdir / "acl").write_text(LAB_ACL.read_text())
        swap = {"listener": f"listener {self.port} 127.0.0.1",
                "password_file": f"password_file {passwd}",
                "acl_file": f"acl_file {self.workdir / 'acl'}",
                "persistence_location": f"persistence_location {self.workdir}/",
                "log_dest": "log_dest stderr", "user": "user root"}
        lines = [swap.get(line.split(" ", 1)[0], line) for line in LAB_CONF.read_text().splitlines()]
        if os.geteuid() == 0 and "user root" not in lines:
            lines.append("user root")        # no privilege drop: it would cancel PDEATHSIG
        self._conf_text = "\n".join(lines) + "\n"

    def _write_conf(self) -> None:
        self.conf_path.write_text(self._conf_text)


class RecordingFleet:
    """A FleetWorker on a daemon thread; per gateway: round ids of vectors received (`seen`) and
    accepted (`accepted`, with the wall time of the last in `last_accept`), and commands obeyed."""

    def __init__(self, spec: FleetSpec, hi: int | None = None) -> None:
        self.spec = spec
        self.hi = spec.gateways if hi is None else hi       # gateways [0, hi) on this thread
        self.worker = FleetWorker(spec, 0, self.hi)
        self.seen: dict[str, list[int]] = {}
        self.accepted: dict[str, list[int]] = {}
        self.last_accept: dict[str, float] = {}
        self.commands: dict[str, list[str]] = {}
        self.accept_log: list[tuple[int, str, int]] = []   # (clock ms, gateway, round id) per accept
        for agent in self.worker.agents:
            self._instrument(agent)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self._stop.is_set,), daemon=True)

    def _instrument(self, agent) -> None:
        gid = agent.gateway_id
        seen, accepted = self.seen.setdefault(gid, []), self.accepted.setdefault(gid, [])
        commands = self.commands.setdefault(gid, [])
        check, cmd_check = agent.guard.check, agent.cmd_guard.check

        def recording_check(msg, now_ms):
            seen.append(msg["round_id"])
            reason = check(msg, now_ms)
            if reason == "":
                accepted.append(msg["round_id"])
                self.last_accept[gid] = time.monotonic()
                self.accept_log.append((self.worker.clock.now_ms(), gid, msg["round_id"]))
            return reason

        def recording_cmd_check(msg, now_ms):
            reason = cmd_check(msg, now_ms)
            if reason == "":
                commands.append(str(msg.get("cmd")))
            return reason
        agent.guard.check = recording_check
        agent.cmd_guard.check = recording_cmd_check

    @property
    def agents(self):
        return self.worker.agents

    def start(self) -> "RecordingFleet":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)

    def wait_for(self, predicate, timeout_s: float) -> float | None:
        """Wall seconds until predicate(agents) held; None when it did not within `timeout_s`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if predicate(self.agents):
                return time.monotonic() - t0
            time.sleep(0.02)
        return None

    def controlled(self, max_age_s: float) -> bool:
        """Every gateway out of fail-safe and obeying a vector accepted within `max_age_s`."""
        now = time.monotonic()
        return all(not a.fail_safe and now - self.last_accept.get(a.gateway_id, -1e9) <= max_age_s
                   for a in self.agents)

    def first_accept_ms(self, above_round: int, since_ms: int = 0) -> int | None:
        """Clock ms of the first vector with a round id above `above_round` any gateway accepted
        at or after `since_ms` (the moment a (re)started controller's control reached the fleet),
        None if none."""
        times = [t for t, _, rid in list(self.accept_log) if rid > above_round and t >= since_ms]
        return min(times) if times else None

    def rebirths(self) -> int:
        return sum(cmds.count("rebirth") for cmds in self.commands.values())

    def complete_rounds(self) -> list[tuple[int, int]]:
        """(round n, enabled W summed over the fleet) for rounds every gateway reported in."""
        buckets = dict(self.worker.stats.buckets)
        return [(n, sum(buckets[n][1:1 + self.spec.k])) for n in sorted(buckets)
                if buckets[n][0] == self.hi]

    def total_w(self) -> int:
        """Rated W of this thread's gateways."""
        return sum(d.rated_w for i in range(self.hi) for d in make_devices(self.spec, i))


def agent_proc(spec: FleetSpec, index: int):
    """Gateway `index` of `spec` alone in a child process (spawned; `proc.kill()` is a SIGKILL:
    the broker publishes its Will). Returns the started process once its gateway is set up."""
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_worker_main, daemon=True,
                       args=(spec, index, index + 1, stop, ready, results, logging.WARNING))
    proc.start()
    proc.keep = (ready, results, stop)     # alive as long as the process: the child opens them
    try:
        started = ready.get(timeout=60)
    except Exception:
        started = None
    if started != 1:
        proc.kill()
        raise RuntimeError(f"gateway {index}: child process did not start")
    return proc


def controller_proc(port: int, clock: SimClock, key_file: Path, db: Path | None, goal: str,
                    round_s: float, log_path: Path, out: Path | None = None,
                    extra: list[str] | None = None) -> subprocess.Popen:
    """`colorgrid controller` as a child process on the shared clock (log appended to log_path)."""
    cmd = [sys.executable, "-m", "colorgrid", "controller", "--broker", f"mqtt://127.0.0.1:{port}",
           "--hmac-key-file", str(key_file), "--goal", goal, "--round-s", str(round_s),
           "--clock", clock.spec(), "--log-level", "INFO"]
    if db is not None:
        cmd += ["--db", str(db)]
    if out is not None:
        cmd += ["--out", str(out)]
    cmd += list(extra or [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def stop_proc(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> int | None:
    """SIGTERM, wait, SIGKILL after `timeout_s`; the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
