"""`colorgrid dispatch` → mosquitto → `colorgrid controller --goal dispatch:...` → fleet: the
controller follows the signed schedule a dispatcher publishes, then falls back when it ends."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud.clock import SimClock
from firmware_sim.broker import MosquittoBroker

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def test_dispatched_schedule_reaches_the_fleet(tmp_path):
    ctl_key = tmp_path / "ctl.json"
    ctl_key.write_text(json.dumps({"lab": (b"q" * 32).hex()}))
    vpp_key = tmp_path / "vpp.json"
    vpp_key.write_text(json.dumps({"vpp": (b"v" * 32).hex()}))
    clock = SimClock(10.0)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with MosquittoBroker() as broker:
        common = ["--broker", broker.url, "--clock", clock.spec()]
        fleet = subprocess.Popen([sys.executable, "-m", "colorgrid", "fleet", "--gateways", "4",
                                  "--devices-per-gateway", "10", "--thermostatic-fraction", "0",
                                  "--duration-s", "20", "--out", str(tmp_path / "fleet"),
                                  "--hmac-key-file", str(ctl_key), "--key-id", "lab", *common],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)
        ctl = subprocess.Popen([sys.executable, "-m", "colorgrid", "controller", "--goal", "dispatch:constant:30",
                                "--dispatch-key-file", str(vpp_key), "--duration-s", "16",
                                "--hmac-key-file", str(ctl_key), "--key-id", "lab",
                                "--out", str(tmp_path / "ctl"), *common],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(4.0)                                     # ≈ 40 s of simulated time at the fallback
        t_disp = (clock.now_ms() - clock.origin_ms) / 1000.0
        sent = subprocess.run([sys.executable, "-m", "colorgrid", "dispatch", "--group", "g0",
                               "--point", "0:22", "--point", "30:18", "--valid-for-s", "30",
                               "--hmac-key-file", str(vpp_key), "--key-id", "vpp",
                               "--out", str(tmp_path / "dispatch"), *common],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        forged = subprocess.run([sys.executable, "-m", "colorgrid", "dispatch", "--group", "g0",
                                 "--point", "0:5", "--hmac-key-file", str(ctl_key), "--key-id", "lab",
                                 *common], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert forged.returncode == 0, forged.stdout + forged.stderr      # published, but not trusted
        ctl_out, _ = ctl.communicate(timeout=120)
        fleet.communicate(timeout=120)
    assert ctl.returncode == 0, ctl_out
    rounds = list(csv.DictReader((tmp_path / "ctl" / "rounds.csv").open()))
    goals = [(float(r["t_s"]), float(r["goal_kw"])) for r in rounds]
    sources = {float(r["goal_kw"]): r["goal_source"] for r in rounds}
    assert sources[30.0] == "fallback" and sources[22.0] == sources[18.0] == "dispatch"
    before = [g for t, g in goals if t < t_disp - 2]
    assert before and set(before) == {30.0}                  # fallback until the dispatch
    assert 22.0 in {g for _, g in goals} and 18.0 in {g for _, g in goals}
    t22 = min(t for t, g in goals if g == 22.0)
    t18 = min(t for t, g in goals if g == 18.0)
    # the schedule's points in the controller's time: the first applies from the first round after
    # the dispatch arrived (broker latency under load: later than its ts_ms), the second — known
    # ahead — exactly at the first round at or after its ts_ms
    p0_ms, p1_ms = [int(r["ts_ms"]) for r in csv.DictReader((tmp_path / "dispatch" / "dispatch.csv").open())]
    assert p1_ms - p0_ms == 30_000                          # integer ms on the wire (floats: 85.88 - 55.88 != 30.0)
    p0_s, p1_s = (p0_ms - clock.origin_ms) / 1000.0, (p1_ms - clock.origin_ms) / 1000.0
    assert p0_s <= t22 < p1_s and p1_s <= t18 <= p1_s + 2.0
    assert t18 - t22 <= 31.0
    after = [g for t, g in goals if t > t18 + 32.0]          # the schedule ended 30 s after its last point
    assert after and set(after) == {30.0}
    assert 5.0 not in {g for _, g in goals}                  # the forged (wrong key) one never applied
    fig = json.loads((tmp_path / "ctl" / "summary.json").read_text())["figures"]
    assert fig["dispatches_accepted"] == 1 and fig["dispatches_rejected"] == 1
    late = [float(r["measured_enabled_kw"]) for r in rounds
            if t22 + 20 <= float(r["t_s"]) < t18 and int(r["n_fresh"]) == 4]
    assert late and abs(sum(late) / len(late) - 22.0) < 5.0   # the fleet followed the dispatch
    dsum = json.loads((tmp_path / "dispatch" / "summary.json").read_text())["figures"]
    assert dsum["points"] == 2
    assert [r["goal_kw"] for r in csv.DictReader((tmp_path / "dispatch" / "dispatch.csv").open())] == ["22.0", "18.0"]
