"""`colorgrid fleet --report-key-seed FILE --enrollment-out PATH` and `colorgrid controller
--enrollment PATH` as separate processes on one broker: every gateway signs its reports with its
own key, the controller hears exactly the enrolled fleet and sheds it; an unsigned fleet of the
same ids is not heard at all (issue 16 item 4, end to end through the commands)."""
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud.clock import SimClock
from firmware_sim.broker import MosquittoBroker

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def colorgrid(*argv):
    return subprocess.Popen([sys.executable, "-m", "colorgrid", *argv], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, what):
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{what} did not stop:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out
    return out


def run_pair(tmp_path, name, broker, key, enrollment, fleet_extra):
    clock = SimClock(10.0)
    common = ["--broker", broker.url, "--hmac-key-file", str(key), "--clock", clock.spec()]
    fleet = colorgrid("fleet", "--gateways", "5", "--devices-per-gateway", "8", "--thermostatic-fraction", "0",
                      "--duration-s", "12", "--out", str(tmp_path / f"{name}-fleet"), *common, *fleet_extra)
    deadline = time.monotonic() + 30
    while not enrollment.exists() and time.monotonic() < deadline:   # written before the fleet starts
        time.sleep(0.1)
    ctl = colorgrid("controller", "--goal", "constant:20", "--duration-s", "8", "--enrollment", str(enrollment),
                    "--out", str(tmp_path / f"{name}-ctl"), *common)
    finish(ctl, "controller")
    finish(fleet, "fleet")
    return json.loads((tmp_path / f"{name}-ctl" / "summary.json").read_text())["figures"]


def test_signed_fleet_and_its_enrollment_through_the_commands(tmp_path):
    key = tmp_path / "key.hex"
    key.write_text((b"q" * 32).hex())
    seed = tmp_path / "seed.hex"
    seed.write_text((b"s" * 32).hex())
    enrollment = tmp_path / "enrollment.json"
    with MosquittoBroker() as broker:
        signed = run_pair(tmp_path, "signed", broker, key, enrollment,
                          ["--report-key-seed", str(seed), "--enrollment-out", str(enrollment)])
        doc = json.loads(enrollment.read_text())
        assert sorted(doc["gateways"]) == [f"gw-{i:05d}" for i in range(5)]
        assert all(len(g["keys"]) == 1 for g in doc["gateways"].values())
        assert stat.S_IMODE(enrollment.stat().st_mode) == 0o600          # it holds every report key
        assert signed["gateways_known"] == 5 and signed["messages_rejected"] == 0
        assert signed["vectors_published"] > 10
    with MosquittoBroker() as broker:   # fresh: no retained signed births of the first run
        # the same ids without their keys: every message rejected, nobody heard, nothing sent
        unsigned = run_pair(tmp_path, "unsigned", broker, key, enrollment, [])
    assert unsigned["gateways_known"] == 0 and unsigned["vectors_published"] == 0
    assert unsigned["messages_rejected"] > 20


def test_enrollment_out_needs_a_seed(tmp_path, capsys):
    from colorgrid.cli import main

    key = tmp_path / "key.hex"
    key.write_text((b"q" * 32).hex())
    code = main(["fleet", "--broker", "mqtt://127.0.0.1:1", "--hmac-key-file", str(key),
                 "--enrollment-out", str(tmp_path / "e.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--enrollment-out" in err, err
    short = tmp_path / "short.hex"
    short.write_text("abcd")
    code = main(["fleet", "--broker", "mqtt://127.0.0.1:1", "--hmac-key-file", str(key),
                 "--report-key-seed", str(short)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--report-key-seed" in err, err
