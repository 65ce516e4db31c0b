"""`colorgrid controller` and `colorgrid fleet` as separate processes on one broker and one
shared clock: the fleet sheds to the constant goal, both write their --out files."""
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


def test_controller_and_fleet_commands(tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"lab": (b"q" * 32).hex()}))
    clock = SimClock(10.0)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with MosquittoBroker() as broker:
        common = ["--broker", broker.url, "--hmac-key-file", str(key), "--key-id", "lab", "--clock", clock.spec()]
        fleet = subprocess.Popen([sys.executable, "-m", "colorgrid", "fleet", "--gateways", "6",
                                  "--devices-per-gateway", "10", "--thermostatic-fraction", "0",
                                  "--duration-s", "14", "--out", str(tmp_path / "fleet"), *common],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)
        ctl = subprocess.Popen([sys.executable, "-m", "colorgrid", "controller", "--goal", "constant:30",
                                "--duration-s", "10", "--db", str(tmp_path / "reg.db"), "--log-level", "INFO",
                                "--out", str(tmp_path / "ctl"), *common],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            ctl_out, _ = ctl.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            ctl.kill()
            ctl_out, _ = ctl.communicate()
            raise AssertionError("controller did not stop:\n" + ctl_out[-3000:]) from None
        fleet_out, _ = fleet.communicate(timeout=120)
    assert ctl.returncode == 0, ctl_out
    assert fleet.returncode == 0, fleet_out
    rounds = list(csv.DictReader((tmp_path / "ctl" / "rounds.csv").open()))
    assert len(rounds) >= 30 and {r["group"] for r in rounds} == {"g0"}
    assert all(float(r["goal_kw"]) == 30.0 for r in rounds)
    late = rounds[len(rounds) // 2:]
    assert all(int(r["n_fresh"]) == 6 for r in late)
    assert abs(sum(float(r["measured_enabled_kw"]) for r in late) / len(late) - 30.0) < 6.0
    summary = json.loads((tmp_path / "ctl" / "summary.json").read_text())
    assert summary["figures"]["messages_rejected"] == 0 and summary["figures"]["gateways_known"] == 6
    frows = list(csv.DictReader((tmp_path / "fleet" / "fleet_rounds.csv").open()))
    assert list(frows[0])[:3] == ["t_s", "gateways_reporting", "enabled_t0_kw"]
    complete = [r for r in frows if int(r["gateways_reporting"]) == 6]   # the last round may be partial
    demand = float(complete[-1]["demand_kw"])
    assert demand > 60.0                                   # 60 devices × 0.5–4.5 kW
    shed = [float(r["enabled_kw"]) for r in complete]
    assert min(shed) < 0.6 * demand                        # the controller's goal took effect
    fsum = json.loads((tmp_path / "fleet" / "summary.json").read_text())["figures"]
    assert fsum["gateways"] == 6 and fsum["vectors_rejected"] == 0
    assert fsum["messages_rejected_foreign_topic"] == 0
