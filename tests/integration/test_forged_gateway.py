"""Issue 16.4 against a real mosquitto: a fleet whose gateways sign their reports with their own
keys, a controller with an enrollment list; a broker client without those keys publishes a
birth + state for a new id claiming 400 MW and a forged state for an enrolled id. The controller
ignores both (logged, counted), the goal stays at half of the real demand, the fleet stays
controlled."""
import csv
import json
import signal
import time

import paho.mqtt.client as mqtt
import pytest

from cloud.clock import SimClock
from cloud.enrollment import enroll_fleet
from edge_agent import codec, topics
from firmware_sim.broker import MosquittoBroker
from firmware_sim.gateway_fleet import FleetSpec
from tests.integration.fleet_harness import FleetThread, controller_proc

pytestmark = pytest.mark.broker
KEY = b"r" * 32
ROUND_S = 0.5


def publish(port, items):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        for topic, payload, retain in items:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_forged_gateways_are_ignored_by_an_enrolled_controller(tmp_path):
    key_file = tmp_path / "key.hex"
    key_file.write_text(KEY.hex())
    broker = MosquittoBroker().start()
    proc = None
    fleet = None
    try:
        clock = SimClock(1.0)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=5, devices_per_gateway=10, round_s=ROUND_S,
                         fail_safe_s=5.0, t_ref_s=(1.0, 0.5, 1.0, 0.5), clock_spec=clock.spec(),
                         key=KEY, thermostatic_fraction=0.0, seed=21, report_key_seed=b"fleet-secret-0123")
        enrollment = tmp_path / "enrollment.json"
        enrollment.write_text(json.dumps(enroll_fleet(spec.report_keys())))
        fleet = FleetThread(spec).start()
        demand_kw = fleet.total_w() / 1000.0
        out = tmp_path / "ctl"
        proc = controller_proc(broker.port, clock, key_file, None, 0.0, ROUND_S, tmp_path / "ctl.log", out=out,
                               extra=["--goal", "regulation:50%:0%", "--enrollment", str(enrollment)])
        fleet.wait_for(lambda agents: all(not a.fail_safe and a.vector_round_id > 0 for a in agents), 20.0)

        n = 4000                                   # 4,000 devices × 100 kW = 400 MW
        devices = [{"device_id": f"d{i}", "tier_w": [50_000, 30_000, 20_000]} for i in range(n)]
        now = clock.now_ms()
        evil_birth = codec.encode_birth("evil", "g0", 0, now, ["green", "yellow", "black"], devices,
                                        {"round_ms": 500})
        evil_state = codec.encode_state("evil", "g0", 0, 1, now, 1, [[50_000 * n, 0, 0, 0], [30_000 * n, 0, 0, 0],
                                                                    [20_000 * n, 0, 0, 0]],
                                        [[n, 0, 0, 0]] * 3, -1, False, 0)
        gid = spec.gateway_id(0)
        agent0 = fleet.agents[0]
        fake = codec.encode_state(gid, "g0", agent0.bd_seq, (agent0.seq + 1) % 256, now, 99,
                                  [[0, 0, 0, 0]] * 3, [[0, 0, 0, 0]] * 3, -1, False, 0)   # unsigned
        mark = time.monotonic()
        publish(broker.port, [(topics.birth("evil"), evil_birth, True), (topics.state("evil"), evil_state, False),
                              (topics.state(gid), fake, False)])
        time.sleep(8 * ROUND_S)
        assert all(not a.fail_safe for a in fleet.agents)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        rows = list(csv.DictReader((out / "rounds.csv").open()))
        summary = json.loads((out / "summary.json").read_text())
        late = [r for r in rows if float(r["t_s"]) > 0][-6:]
        assert late and all(int(r["n_live"]) == 5 for r in late)
        assert all(abs(float(r["goal_kw"]) - 0.5 * demand_kw) < 0.2 * demand_kw for r in late)
        assert summary["figures"]["messages_rejected"] >= 3 and summary["figures"]["gateways_known"] == 5
        assert time.monotonic() - mark < 60
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
        if fleet is not None:
            fleet.stop()
        broker.close()
