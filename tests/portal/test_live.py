"""/metrics and the gateway twin with the controller running in the same process
(portal.live): a `FakeLive` with hand-set figures and a real `ControllerProbe` over a
`ControllerCore` fed by simulated gateways (tests/portal/fleet_world.py)."""
import re

from fastapi.testclient import TestClient

from portal.api import create_app
from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder
from portal.live import ControllerProbe, FakeLive
from portal.store import FakePortalStore
from portal.tokens import FakeTokenStore
from tests.portal.conftest import NOW, Clock
from tests.portal.fleet_world import ControlledFleet, SimGateway


def _app(world_dir, live, clock):
    tokens = FakeTokenStore()
    token, _ = tokens.create("ops", ["admin"], 3600, at_ms=clock())
    fleet = FleetView(ReadOnlyRegistry(world_dir / "registry.db"), ResultsFolder(world_dir), live=live)
    client = TestClient(create_app(tokens, FakePortalStore(), fleet, clock=clock, live=live))
    return client, {"Authorization": f"Bearer {token}"}


def _value(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, (name, labels)
    return float(m.group(1))


def test_fake_live_figures_reach_metrics(tmp_path):
    from tests.portal.conftest import write_registry

    write_registry(tmp_path / "registry.db")
    live = FakeLive(
        gateways={"gw-1": {"group": "671.1", "state": "online", "store_depth": 0},
                  "gw-2": {"group": "671.1", "state": "fail_safe", "store_depth": 7},
                  "gw-3": {"group": "671.2", "state": "stale", "store_depth": 3}},
        counts={"rounds": 9, "missed_rounds": 1, "vectors_published": 17,
                "vectors_rejected_by_gateways": {"expired": 2}, "reports_rejected": {"bad_sig": 4}},
        latencies=[0.4, 3.0, 30.0])
    client, auth = _app(tmp_path, live, Clock())
    text = client.get("/metrics", headers=auth).text
    h = "colorgrid_controller_round_duration_seconds"
    assert _value(text, f"{h}_bucket", '{le="0.0005"}') == 1       # 0.4 ms
    assert _value(text, f"{h}_bucket", '{le="0.005"}') == 2        # 3 ms
    assert _value(text, f"{h}_bucket", '{le="0.05"}') == 3         # 30 ms
    assert _value(text, f"{h}_count") == 3 and abs(_value(text, f"{h}_sum") - 0.0334) < 1e-9
    live.latencies.append(1500.0)                                   # a new round: counted once
    text = client.get("/metrics", headers=auth).text
    assert _value(text, f"{h}_count") == 4 and _value(text, f"{h}_bucket", '{le="1.0"}') == 3
    assert _value(text, "colorgrid_controller_vectors_sent_total") == 17
    assert _value(text, "colorgrid_controller_missed_rounds_total") == 1
    assert _value(text, "colorgrid_controller_vectors_rejected_total", '{reason="expired"}') == 2
    assert _value(text, "colorgrid_controller_reports_rejected_total", '{reason="bad_sig"}') == 4
    assert _value(text, "colorgrid_controller_gateways", '{group="671.1",state="fail_safe"}') == 1
    assert _value(text, "colorgrid_controller_gateways", '{group="671.2",state="stale"}') == 1
    assert _value(text, "colorgrid_controller_store_forward_depth", '{group="671.1"}') == 7
    assert _value(text, "colorgrid_controller_store_forward_depth_max", '{group="671.2"}') == 3
    assert _value(text, "colorgrid_portal_requests_total", '{method="GET",route="/metrics",status="200"}') == 1
    twin = client.get("/v1/fleet/gateways/gw-2", headers=auth).json()
    assert twin["live"]["state"] == "fail_safe" and twin["live"]["store_depth"] == 7


def test_probe_reads_a_running_controller(tmp_path):
    (tmp_path / "ctl").mkdir()
    gws = [SimGateway("gw-a", "671.1", 4, [1000, 500, 500]), SimGateway("gw-b", "671.1", 4, [1000, 500, 500])]
    world = ControlledFleet(tmp_path / "registry.db", tmp_path / "ctl" / "rounds.csv", {"671.1": 6.0}, gws,
                            silent=("gw-b",), history_rounds=5)
    try:

        class Service:                  # what ControllerService counts, for the probe
            rounds, missed_rounds, round_compute_ms = 5, 0, [1.0, 2.0, 1.5, 1.2, 0.9]

        clock = Clock(world.t_ms)
        client, auth = _app(tmp_path, ControllerProbe(world.core, Service()), clock)
        twins = {g["gateway_id"]: g for g in client.get("/v1/fleet/gateways", headers=auth).json()["gateways"]}
        # gw-a reported half a round before the last boundary; gw-b never reported
        assert twins["gw-a"]["live"]["state"] == "online" and twins["gw-a"]["live"]["report_age_ms"] == 1000
        assert twins["gw-a"]["live"]["store_depth"] == 0 and twins["gw-a"]["live"]["fail_safe"] is False
        assert twins["gw-b"]["live"]["state"] == "stale" and twins["gw-b"]["live"]["report_age_ms"] is None
        clock.ms += 10_000                                            # no report for 11 s: stale
        twins = {g["gateway_id"]: g for g in client.get("/v1/fleet/gateways", headers=auth).json()["gateways"]}
        assert twins["gw-a"]["live"]["state"] == "stale"
        text = client.get("/metrics", headers=auth).text
        assert _value(text, "colorgrid_controller_vectors_sent_total") == world.core.published > 0
        assert _value(text, "colorgrid_controller_round_duration_seconds_count") == 5
        world.die("gw-a")
        twins = {g["gateway_id"]: g for g in client.get("/v1/fleet/gateways", headers=auth).json()["gateways"]}
        assert twins["gw-a"]["live"]["state"] == "offline"
    finally:
        world.close()
