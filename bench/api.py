"""API latency of the operator surface with the controller running a large simulated fleet.

    python -m bench.api [--gateways 1000] [--devices-per-gateway 4] [--groups 10] [--clients 50]
                        [--duration-s 20] [--json PATH]

1. The world, `--topology split` (default, as deployed): a private broker, `colorgrid controller`
   (`--db registry.db --out DIR`), `colorgrid fleet` (`--gateways` simulated gateways: firmware_sim's
   multiplexed fleet running the real edge_agent code) and `colorgrid serve --registry` each in
   its own process; `--topology demo`: `colorgrid serve --demo`, the controller in the API's
   process. The bench waits until every gateway is born and controlled.
2. `--clients` concurrent keep-alive HTTP clients over loopback (one asyncio loop in this
   process) read `GET /v1/fleet/groups` (the dashboard's fleet-state read: every group's state per
   tier, latest vector and round, health) for `--duration-s`: p50/p99 latency, requests/s.
3. Baseline, in the same run with the same clients, while the fleet and the controller still
   run: a bare FastAPI app under uvicorn (a child process of this bench) answering a constant
   JSON body of the same size; ratios portal/baseline.
4. Dashboard update interval: how often the data the dashboard draws advances (a poller reads
   `/v1/fleet/rounds?limit=1` every 0.1 s during the load and times the changes of the newest
   round), and the dashboard's own poll period (`POLL_MS` in portal/static/app.js); the page
   shows new data at most their sum after it happens.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._report import Report


def _child(argv: list[str], pattern: str, timeout_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    text, deadline = "", time.monotonic() + timeout_s
    while not re.search(pattern, text, re.M):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"bench.api: child {argv[2:4]} did not start: {text[-500:]}")
        text += line
    return proc, text


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Conn:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a client far cheaper than httpx, so
    the load generator (this process, on the same machine) stays out of the measurement as much
    as it can; the baseline is measured through the same client."""

    def __init__(self, host: str, port: int, headers: dict) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader = self.writer = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}\r\n".encode())
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            body = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError, AttributeError):
            self.close()
            raise ConnectionError("connection dropped") from None
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(base: str, path: str, headers: dict, clients: int, duration_s: float, poll: str | None = None):
    """(latencies ms, requests, errors, wall s, [(t, newest round)]) of `clients` closed loops."""
    import json

    host, port = re.match(r"http://([^:/]+):(\d+)", base).groups()
    lat: list[float] = []
    errors = [0]
    changes: list[tuple[float, int]] = []
    end = time.perf_counter() + duration_s

    async def one() -> None:
        conn = _Conn(host, int(port), headers)
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                status, _ = await conn.get(path)
            except (ConnectionError, OSError):     # counted (a dropped connection), then reconnected
                errors[0] += 1
                continue
            if status != 200:
                errors[0] += 1
            lat.append((time.perf_counter() - t0) * 1000.0)
        conn.close()

    async def poller() -> None:
        conn, last = _Conn(host, int(port), headers), None
        while time.perf_counter() < end:
            try:
                groups = json.loads((await conn.get(poll))[1])["groups"]
            except (ConnectionError, OSError, ValueError, KeyError):
                continue
            newest = max((g["round_id"][-1] for g in groups if g["round_id"]), default=None)
            if newest != last:
                changes.append((time.perf_counter(), newest))
                last = newest
            await asyncio.sleep(0.1)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(clients)], *([poller()] if poll else []))
    return lat, len(lat), errors[0], time.perf_counter() - t0, changes


def _wait_fleet(base: str, headers: dict, gateways: int, timeout_s: float) -> float:
    import httpx

    t0 = time.monotonic()
    while True:
        try:
            groups = httpx.get(base + "/v1/fleet/groups", headers=headers, timeout=30).json()["groups"]
            online = sum(g["health"]["online"] for g in groups)
            if online >= gateways:
                return time.monotonic() - t0
        except (httpx.HTTPError, KeyError, ValueError):
            online = 0
        if time.monotonic() - t0 > timeout_s:
            raise SystemExit(f"bench.api: only {online} of {gateways} gateways controlled after {timeout_s:g} s")
        time.sleep(1.0)


def _baseline_server(port: int, size: int) -> None:
    """A bare FastAPI endpoint returning a constant JSON body of `size` bytes (child process)."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = ('{"pad":"' + "x" * max(0, size - 10) + '"}').encode()
    app = FastAPI()

    @app.get("/v1/fleet/groups")
    async def groups() -> Response:                 # on the event loop, as the portal's fleet reads
        return Response(body, media_type="application/json")

    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(f"baseline on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def _split_world(a, folder: Path):
    """The deployed topology: a broker, `colorgrid controller`, `colorgrid fleet` and
    `colorgrid serve --registry` each in its own process; a read token from `colorgrid token`."""
    from firmware_sim.broker import start_broker

    broker = start_broker("auto")
    url = f"mqtt://127.0.0.1:{broker.port}"
    key = folder / "ctl.key"
    key.write_text(os.urandom(32).hex() + "\n")
    (folder / "ctl").mkdir()
    py = [sys.executable, "-m", "colorgrid"]
    quiet = dict(stdout=open(folder / "children.log", "w"), stderr=subprocess.STDOUT)
    children = [subprocess.Popen(py + ["controller", "--broker", url, "--hmac-key-file", str(key), "--db",
                                       str(folder / "registry.db"), "--out", str(folder / "ctl"), "--log-level",
                                       "WARNING"], **quiet),
                subprocess.Popen(py + ["fleet", "--broker", url, "--hmac-key-file", str(key), "--gateways",
                                       str(a.gateways), "--devices-per-gateway", str(a.devices_per_gateway),
                                       "--groups", str(a.groups)], **quiet)]
    deadline = time.monotonic() + 60
    while not (folder / "registry.db").is_file():
        if time.monotonic() > deadline:
            raise SystemExit("bench.api: the controller did not create its registry")
        time.sleep(0.2)
    out = subprocess.run(py + ["token", "create", "--db", str(folder / "portal.db"), "--stakeholder", "bench",
                               "--scope", "fleet:read", "--scope", "metrics:read", "--group", "*", "--ttl", "3600"],
                         capture_output=True, text=True, check=True)
    token = out.stdout.strip().splitlines()[-1]
    serve, text = _child(py + ["serve", "--registry", str(folder / "registry.db"), "--results", str(folder),
                               "--db", str(folder / "portal.db"), "--port", "0", "--log-level", "warning"],
                         r"colorgrid portal on", 60)
    return broker, children, serve, text, token


def _figures(rep: Report, prefix: str, lat: list[float], n: int, errors: int, wall: float) -> dict:
    arr = np.asarray(lat)
    out = {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "rps": n / wall}
    rep.figure(f"{prefix}_p50_ms", out["p50"], "ms")
    rep.figure(f"{prefix}_p99_ms", out["p99"], "ms", target="<= 50" if prefix == "fleet_state" else None)
    rep.figure(f"{prefix}_requests_per_s", out["rps"], "1/s")
    rep.figure(f"{prefix}_errors", errors)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--devices-per-gateway", type=int, default=4)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--fleet-timeout-s", type=float, default=300.0)
    parser.add_argument("--topology", choices=("split", "demo"), default="split",
                        help="split (default): controller, fleet and API each their own process, as deployed; "
                             "demo: `colorgrid serve --demo`, the controller in the API's process")
    parser.add_argument("--baseline-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if "--baseline-server" in argv:
        ns = parser.parse_args(argv)
        _baseline_server(ns.baseline_server, ns.size)
        return 0
    rep = Report("api", argv, parser)
    a = rep.args
    import httpx

    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    children: list = []
    broker = None
    if a.topology == "demo":
        serve, text = _child([sys.executable, "-m", "colorgrid", "serve", "--demo", "--demo-dir", str(folder),
                              "--gateways", str(a.gateways), "--devices-per-gateway", str(a.devices_per_gateway),
                              "--groups", str(a.groups), "--port", "0", "--log-level", "warning"],
                             r"^admin token:", a.fleet_timeout_s)
        token = re.search(r"read token \(fleet, market, metrics\): (\S+)", text).group(1)
    else:
        broker, children, serve, text, token = _split_world(a, folder)
    base = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
    auth = {"Authorization": "Bearer " + token}
    try:
        rep.figure("fleet_ready_s", _wait_fleet(base, auth, a.gateways, a.fleet_timeout_s), "s",
                   note=f"{a.gateways} gateways x {a.devices_per_gateway} devices in {a.groups} groups controlled")
        body = httpx.get(base + "/v1/fleet/groups", headers=auth, timeout=30).content
        rep.figure("fleet_state_body_bytes", len(body), "B")
        lat, n, err, wall, changes = asyncio.run(_load(base, "/v1/fleet/groups", auth, a.clients, a.duration_s,
                                                       poll="/v1/fleet/rounds?limit=1"))
        portal = _figures(rep, "fleet_state", lat, n, err, wall)
        gaps = np.diff([t for t, _ in changes[1:]]) if len(changes) > 2 else np.asarray([float("nan")])
        update_s = float(np.median(gaps)) if np.isfinite(gaps).all() else -1.0
        poll_ms = int(re.search(r"POLL_MS = (\d+)", (Path(__file__).parents[1] / "portal/static/app.js")
                                .read_text()).group(1))
        rep.figure("data_update_interval_s", update_s, "s", note="median time between new rounds under load "
                   "(-1: fewer than 3 new rounds seen)")
        rep.figure("rounds_seen_during_load", max(0, len(changes) - 1), "",
                   note=f"new controller rounds in rounds.csv during the {a.duration_s:g}-s load "
                        f"(a healthy controller: ~{a.duration_s / 2:g}); children's log: {folder}/children.log")
        rep.figure("dashboard_poll_interval_s", poll_ms / 1000.0, "s", target="<= 2")
        metrics = httpx.get(base + "/metrics", headers=auth, timeout=30).text
        missed = re.search(r"^colorgrid_controller_missed_rounds_total (\S+)", metrics, re.M)
        rounds = re.search(r"^colorgrid_controller_rounds_total (\S+)", metrics, re.M)
        if missed and rounds:
            rep.figure("controller_rounds_missed_during_run", float(missed.group(1)), "",
                       note=f"of {float(rounds.group(1)):g} rounds since start")
        # the baseline while the fleet and the controller still run (the same machine load)
        bare, text = _child([sys.executable, "-m", "bench.api", "--baseline-server", "0", "--size", str(len(body))],
                            r"^baseline on", 60)
        try:
            bare_base = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
            deadline = time.monotonic() + 30
            while True:                          # bound before uvicorn listens: wait for an answer
                try:
                    httpx.get(bare_base + "/v1/fleet/groups", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit("bench.api: the baseline server did not answer") from None
                    time.sleep(0.1)
            lat, n, err, wall, _ = asyncio.run(_load(bare_base, "/v1/fleet/groups", auth, a.clients, a.duration_s))
            baseline = _figures(rep, "baseline_constant", lat, n, err, wall)
        finally:
            _stop(bare)
    finally:
        _stop(serve)
        for proc in children:
            _stop(proc)
        if broker is not None:
            broker.close()
    rep.ratio("p99_vs_bare_fastapi", portal["p99"], baseline["p99"])
    rep.ratio("rps_bare_fastapi_vs_portal", baseline["rps"], portal["rps"])
    rep.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
