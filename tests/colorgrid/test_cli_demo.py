"""`colorgrid demo` end to end (private mosquitto child, controller, fleet): files and figures
under --out, and the tracking it reports is real (bounded error, checked from the CSV)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.broker import MosquittoBroker

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[2]


def run_demo(out, *extra):
    cmd = [sys.executable, "-m", "colorgrid", "demo", "--gateways", "12", "--devices-per-gateway", "25",
           "--minutes", "9", "--speed", "20", "--warmup-s", "180", "--out", str(out), *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)


def test_demo_private_broker_writes_results(tmp_path):
    proc = run_demo(tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broker: mosquitto" in proc.stdout and "100.0%" in proc.stdout
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["files"]) == ["demo.png", "summary.json", "timeseries.csv"]
    f = summary["figures"]
    for name in ("rms_pct_of_capacity", "pjm_score", "vector_latency_p50_ms", "vector_latency_p99_ms",
                 "messages_total", "missed_rounds", "controller_rounds"):
        assert name in f, name
    assert summary["units"]["rms_pct_of_capacity"] == "%"
    with (out / "timeseries.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["t_s", "goal_kw", "achieved_kw", "demand_kw", "gateways_reporting",
                             "enabled_t0_kw", "enabled_t1_kw", "enabled_t2_kw", "complete"]
    assert all(r["complete"] == str(int(r["gateways_reporting"] == "12")) for r in rows)
    assert f["fell_behind"] in (True, False)
    assert len(rows) >= 250                                   # ≈ 270 rounds of 2 s
    scored = [r for r in rows if float(r["t_s"]) >= 180 and int(r["gateways_reporting"]) == 12]
    for r in scored:   # achieved = Σ tiers, and it follows the goal
        tiers = sum(float(r[f"enabled_t{i}_kw"]) for i in range(3))
        assert abs(tiers - float(r["achieved_kw"])) < 1e-6
    err = [abs(float(r["achieved_kw"]) - float(r["goal_kw"])) for r in scored]
    demand = sum(float(r["demand_kw"]) for r in scored) / len(scored)
    assert max(err) < 0.1 * demand
    assert f["rms_pct_of_capacity"] < 15.0 and f["pjm_score"] > 0.8   # 300 devices: noisy but tracking
    assert f["missed_rounds"] == 0 and f["messages_rejected_by_controller"] == 0
    # enrolled, signed reports by default: the controller heard only signed reports of the 12
    assert f["gateways_enrolled"] == 12 and "enrolled, signed reports" in proc.stdout
    assert f["vector_ttl_s"] == 30.0       # 1.5 s of wall clock at 20x (3 rounds would be 0.3 s)


def test_demo_uses_given_broker_and_rejects_bad_goal(tmp_path):
    with MosquittoBroker() as broker:
        bad = run_demo(tmp_path / "bad", "--broker", broker.url, "--goal", "sometimes")
        assert bad.returncode == 2 and "--goal" in bad.stderr
        ok = run_demo(tmp_path / "ok", "--broker", broker.url, "--minutes", "1", "--goal", "constant:40")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "broker: external" in ok.stdout


def test_demo_embedded_amqtt_broker_fallback(tmp_path):
    """The pure-Python broker the demo falls back to when mosquitto is missing (forced here)."""
    cmd = [sys.executable, "-m", "colorgrid", "demo", "--embedded-broker", "--gateways", "8",
           "--devices-per-gateway", "20", "--minutes", "3", "--speed", "10", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broker: amqtt" in proc.stdout
    f = json.loads((tmp_path / "summary.json").read_text())["figures"]
    # every gateway connected; a link the fallback broker dropped under load (keepalive) was
    # re-established by the reconnect policy (the reason is in the agents' warning log). How many
    # links a busy machine makes amqtt drop is not something the demo controls (3 were seen on a
    # loaded 2-core machine): what it guarantees is that each one comes back and control holds
    assert f["connects"] == 8 + f["connection_losses"], proc.stdout + proc.stderr
    assert f["connection_losses"] < f["gateways"] * 3, proc.stdout + proc.stderr  # < one per gateway per simulated min
    # under CPU load a vector can arrive after its 3-round lifetime (0.6 s wall at 10x) or be
    # re-delivered (QoS 1 duplicate): both are rejected by the agent's guard, nothing else is.
    # amqtt under load was seen delivering other gateways' retained births to gateways that never
    # subscribed to them: the agents reject and count those apart (messages_rejected_foreign_topic)
    assert f["vectors_rejected"] == f["vectors_rejected_expired"] + f["vectors_rejected_as_replay"], f
    assert f["vectors_rejected"] <= 0.05 * f["vectors_delivered"], f
    assert f["rounds_with_fresh_vector_pct"] > 90.0, f
    assert f["vectors_delivered"] >= 8 * 80, f    # ≈ 90 rounds × 8 gateways went through amqtt


def test_controller_flag_parsing(tmp_path):
    from cloud.goals import FileGoal, RegulationGoal
    from cloud.goals import FractionOfDemand
    from colorgrid.cli import main
    from cloud.config import ConfigError as CommandError, parse_goal, read_key

    assert parse_goal("constant:12.5", 0).goal_kw("g", 0) == 12.5
    reg = parse_goal("regulation", 0)
    assert isinstance(reg, FractionOfDemand) and (reg.inner.base_kw, reg.inner.amplitude_kw) == (0.5, 0.15)
    kw = parse_goal("regulation:400:100", 0)
    assert isinstance(kw, RegulationGoal) and kw.base_kw == 400 and kw.amplitude_kw == 100
    goal_csv = tmp_path / "g.csv"
    goal_csv.write_text("t_s,goal_kw\n0,5\n10,7\n")
    assert isinstance(parse_goal(f"file:{goal_csv}", 0), FileGoal)
    assert parse_goal(f"file:{goal_csv}", 1000).goal_kw("g", 11_500) == 7
    for bad in ("nope", "constant:x", "regulation:50%:100", f"file:{tmp_path}/missing.csv"):
        with pytest.raises(CommandError, match="--goal"):
            parse_goal(bad, 0)
    key = tmp_path / "k.json"
    key.write_text(json.dumps({"a": "00" * 16, "b": "11" * 20}))
    assert read_key(str(key), "b") == ("b", b"\x11" * 20)
    assert read_key(str(key), "zz") == ("a", b"\x00" * 16)
    (tmp_path / "short.hex").write_text("abcd")
    with pytest.raises(CommandError, match="shorter than 16"):
        read_key(str(tmp_path / "short.hex"), "k1")
    (tmp_path / "junk.hex").write_text("not hex at all")
    with pytest.raises(CommandError, match="--hmac-key-file"):
        read_key(str(tmp_path / "junk.hex"), "k1")
    assert main(["controller", "--broker", "tcp://x", "--hmac-key-file", str(key)]) == 2
    assert main(["controller", "--broker", "mqtt://127.0.0.1:1", "--hmac-key-file", str(tmp_path / "none")]) == 2


def test_demo_writes_to_a_default_folder_and_says_where(tmp_path):
    cmd = [sys.executable, "-m", "colorgrid", "demo", "--gateways", "4", "--devices-per-gateway", "10",
           "--minutes", "1", "--warmup-s", "20"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from colorgrid.commands.demo import DEFAULT_OUT

    assert f"results in {DEFAULT_OUT}/" in proc.stdout
    assert sorted(p.name for p in (tmp_path / DEFAULT_OUT).iterdir()) == ["demo.png", "summary.json",
                                                                          "timeseries.csv"]


def test_demo_plot_leaves_incomplete_rounds_out_of_the_lines(tmp_path, monkeypatch):
    """A round in which not every gateway reported is drawn as a gap (and marked), not as a dip."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from colorgrid.commands.demo import _plot
    from colorgrid.results import RunOutput

    rows = [[2.0 * n, 100.0, 100.0 if n != 3 else 40.0, 200.0, 4 if n != 3 else 2, 10.0, 40.0, 50.0]
            for n in range(6)]
    seen = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: seen.setdefault("fig", fig))
    _plot(RunOutput(tmp_path, "demo", {}), rows, 3, gateways=4)
    ax = seen["fig"].axes[0]
    achieved = [ln for ln in ax.get_lines() if ln.get_label() == "achieved kW (gateways)"][0]
    y = list(achieved.get_ydata())
    assert math.isnan(y[3]) and all(v == 100.0 for i, v in enumerate(y) if i != 3)
    assert any("incomplete round (1" in ln.get_label() for ln in ax.get_lines())


BUSY_LOOP = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


def test_demo_on_a_loaded_machine_slows_down_and_still_scores(tmp_path):
    """Issue 16.10: with a busy-loop child on every core the demo used to collapse at 20x (every
    gateway round fail-safe, vectors arriving long expired). It now slows its shared clock when
    it falls behind, says so in one line, and reports a valid score on simulated time."""
    import os

    cores = len(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(s=200)]) for _ in range(cores)]
    out = tmp_path / "loaded"
    try:
        cmd = [sys.executable, "-m", "colorgrid", "demo", "--gateways", "12", "--devices-per-gateway", "25",
               "--minutes", "8", "--speed", "20", "--warmup-s", "120", "--out", str(out)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=170)
        assert all(h.poll() is None for h in hogs)          # the machine stayed loaded throughout
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = json.loads((out / "summary.json").read_text())["figures"]
    assert "pjm_score" in f, f.get("pjm_note", f)              # a valid score, not a note
    assert f["pjm_score"] > 0.5 and f["rms_pct_of_capacity"] < 30.0, f
    assert f["vectors_rejected"] < 0.01 * f["vectors_delivered"], f
    history = f["speed_history"]
    speeds = [h["speed"] for h in history]
    assert speeds[0] == 20.0 and f["speed_changes"] == len(history) - 1 and f["speed_final"] == speeds[-1]
    assert all(b == max(1.0, a / 2) for a, b in zip(speeds, speeds[1:]))       # halved, never below 1x
    times = [h["t_sim_s"] for h in history]
    assert times == sorted(times)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("demo: machine is busy")]
    assert [f"slowing the simulation to {s:g}x" in ln for ln, s in zip(lines, speeds[1:])] == [True] * len(lines)
    assert len(lines) == f["speed_changes"]
    # the slow-down happened, or it was not needed: the run kept up with its clock
    assert f["slowed_down"] or not f["fell_behind"], f
    # metrics on simulated time: the rows cover the 8 simulated minutes whatever the speed was
    with (out / "timeseries.csv").open() as fh:
        t = [float(r["t_s"]) for r in csv.DictReader(fh)]
    assert t[-1] >= 8 * 60 - 10 and len(t) >= 0.9 * (8 * 60 / 2)
