"""Gateway fleet (real edge_agent agents, multiplexed paho clients) against a real mosquitto,
driven by a test-side challenger that signs vectors: shed-all → exactly the black demand stays
enabled; controller silent → every gateway fail-safes and all demand returns."""
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from cloud.clock import SimClock
from edge_agent import codec, security, topics
from firmware_sim.broker import MosquittoBroker
from firmware_sim.gateway_fleet import FleetError, FleetSpec, FleetWorker, make_devices, summarize

pytestmark = pytest.mark.broker
KEY = b"f" * 32


def test_devices_are_deterministic_and_valid():
    spec = FleetSpec("h", 1, gateways=3, devices_per_gateway=50, key=KEY, seed=4)
    a = [(d.device_id, d.rated_w, d.tier_shares, type(d).__name__) for d in make_devices(spec, 2)]
    b = [(d.device_id, d.rated_w, d.tier_shares, type(d).__name__) for d in make_devices(spec, 2)]
    c = [(d.device_id, d.rated_w, d.tier_shares) for d in make_devices(spec, 1)]
    assert a == b and [x[:3] for x in a] != c
    assert all(500 <= x[1] <= 4500 and abs(sum(x[2]) - 1) < 1e-9 for x in a)
    assert {x[3] for x in a} == {"ConstantDevice", "ThermostaticDevice"}
    with pytest.raises(FleetError, match="key"):
        FleetSpec("h", 1, key=b"short")


def black_w(spec):
    return sum(int(round(d.rated_w * d.tier_shares[2])) for i in range(spec.gateways)
               for d in make_devices(spec, i))


def total_w(spec):
    return sum(d.rated_w for i in range(spec.gateways) for d in make_devices(spec, i))


@pytest.mark.parametrize("device_model", ["agent", "vector"])
def test_fleet_sheds_on_signed_vectors_then_fails_safe(device_model):
    broker = MosquittoBroker().start()
    try:
        clock = SimClock(1.0)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=12, devices_per_gateway=8, round_s=0.5,
                         fail_safe_s=2.0, t_ref_s=(1.0, 0.5, 1.0, 0.5), clock_spec=clock.spec(),
                         key=KEY, thermostatic_fraction=0.0, seed=3, device_model=device_model)
        worker = FleetWorker(spec, 0, spec.gateways)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop.is_set,))
        births = []
        chal = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="challenger")
        chal.on_message = lambda c, u, m: births.append(m.topic)
        chal.connect("127.0.0.1", broker.port)
        chal.subscribe(topics.ALL_BIRTHS, qos=1)
        chal.loop_start()
        thread.start()
        rid = 0
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:      # shed green+yellow every round for 4 s
            rid += 1
            now = clock.now_ms()
            chal.publish(topics.vector("g0"), security.make_vector(
                "g0", rid, [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], now, 2000, "k1", KEY), qos=1)
            time.sleep(0.5)
        shed_bucket = (clock.now_ms() - clock.origin_ms) // 500 - 1
        time.sleep(5.0)                      # silence: fail-safe after 2 s, refractory <= 1.5 s
        stop.set()
        thread.join(20)
        chal.loop_stop()
        stats = worker.stats
        assert sorted(set(births)) == sorted(topics.birth(spec.gateway_id(i)) for i in range(12))
        row = stats.buckets[shed_bucket]
        assert row[0] == 12                              # every gateway reported in that round
        assert row[1] == 0 and row[2] == 0               # green and yellow fully shed
        assert abs(row[3] - black_w(spec)) <= 12 * 8     # black never shed (≤ 1 W split rounding/device)
        assert row[3] > 0
        # the last round every gateway reported in (the stop may cut the round after it short)
        last = stats.buckets[max(n for n, row in stats.buckets.items() if row[0] == 12)]
        assert sum(last[1:4]) == total_w(spec)           # fail-safe: every watt back in service
        m = stats.metrics
        assert m["fail_safe_rounds"] > 12 and m["vectors_accepted"] >= 12 * 6
        assert m["rejected"] == 0                        # black p_off=1 is legal: forced to 0 locally
        s = summarize(stats)
        assert 0 < s["vector_latency_p50_ms"] < 250
    finally:
        broker.close()


def test_summary_counts_every_expiry_and_link_loss():
    from firmware_sim.gateway_fleet import FleetStats, summarize
    st = FleetStats(3)
    st.rejections = {"expired": 2, "expired before its round": 3, "replay": 1, "bad signature": 4}
    st.metrics = {"rejected": 12, "rejected_foreign_topic": 2, "connects": 9, "connection_losses": 1,
                  "rounds": 5}
    s = summarize(st)
    assert s["vectors_rejected_expired"] == 5 and s["vectors_rejected_as_replay"] == 1
    assert s["vectors_rejected"] == 10 and s["messages_rejected_foreign_topic"] == 2
    assert s["connects"] == 9 and s["connection_losses"] == 1


def test_sigterm_to_the_process_group_stops_the_fleet_and_writes_its_files(tmp_path):
    """What systemd does on stop: SIGTERM to the whole process group (parent and its workers).
    Each worker treats it like the parent's stop: it reports, the parent writes its files."""
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    key = tmp_path / "key.hex"
    key.write_text(KEY.hex())
    out = tmp_path / "out"
    with MosquittoBroker() as broker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "colorgrid", "fleet", "--broker", broker.url, "--gateways", "4",
             "--devices-per-gateway", "5", "--processes", "2", "--hmac-key-file", str(key), "--out", str(out)],
            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,  # setsid: its own process group, like a service
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            started = proc.stdout.readline()   # printed once every worker is connected
            assert "Ctrl-C to stop" in started, started + proc.stdout.read()
            time.sleep(3.0)                    # a round or so
            os.killpg(proc.pid, signal.SIGTERM)  # kill -TERM -- -PGID
            rest, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, started + rest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"]["gateways"] == 4 and summary["figures"]["gateway_rounds"] > 0, summary
    assert (out / "fleet_rounds.csv").read_text().startswith("t_s,gateways_reporting")
