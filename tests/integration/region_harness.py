"""Helpers of the aggregation-tree tests (test_region_tree, test_bridged_brokers): aggregator
subprocesses (`colorgrid aggregator`), stopping them, waiting on a condition."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.integration.fleet_harness import REPO

REGION_KEY = b"r" * 32


def aggregator(tmp_path, broker, clock, region, agg_id, regions_file, shared=False) -> subprocess.Popen:
    """`colorgrid aggregator --region REGION` on `broker`, signing with REGION_KEY (key id rk)."""
    key = tmp_path / "region.key"
    key.write_text(json.dumps({"rk": REGION_KEY.hex()}))
    cmd = [sys.executable, "-m", "colorgrid", "aggregator", "--region", region, "--broker", broker.url,
           "--hmac-key-file", str(key), "--key-id", "rk", "--regions", str(regions_file),
           "--aggregator-id", agg_id, "--clock", clock.spec(), "--log-level", "WARNING"]
    if shared:
        cmd.append("--shared")
    log = open(tmp_path / f"{agg_id}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    return proc


def stop(procs) -> None:
    """SIGTERM every process still running, then wait (SIGKILL after 15 s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait(predicate, timeout_s, what) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")
