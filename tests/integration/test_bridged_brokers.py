"""The bridged layout of deploy/mosquitto-bridge/ on three real mosquitto children: two regional
brokers (gateways + their region aggregators) bridged to a central one (the controller), each
started from the deployment config as is, with only its listener port, the bridge's `address`
and local paths swapped.

Shown: the loop closes across the bridges — every gateway of both regions applies the
controller's vectors (which crossed centre -> region), the controller hears every gateway through
the two region sums (which crossed region -> centre) and reads no state report, and no state
report reaches the central broker at all.
"""
import json
import time
from pathlib import Path

import pytest

from cloud.clock import SimClock
from cloud.control_law import ControlParams
from cloud.goals import ConstantGoal
from cloud.region import RegionMap, RegionView
from cloud.rounds import ControllerCore
from firmware_sim.closed_loop import ControllerThread
from firmware_sim.gateway_fleet import FleetSpec
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import Observer
from tests.integration.fleet_harness import FleetThread
from tests.integration.region_harness import REGION_KEY, aggregator, stop, wait

pytestmark = pytest.mark.broker
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto-bridge"
CTL_KEY = b"c" * 32
SPEED = 4.0               # a 2-s round is 0.5 s of wall time
PER_REGION = 4
REGIONS = ("north", "south")


def region_conf(region: str, central_port: int) -> str:
    """deploy/mosquitto-bridge/region-R.conf with the bridge pointed at the test's central broker."""
    lines = (DEPLOY / f"region-{region}.conf").read_text().splitlines()
    out = [f"address 127.0.0.1:{central_port}" if line.startswith("address ") else line for line in lines]
    assert out != lines, "the deployment config has no address line"
    return "\n".join(out) + "\n"


def test_bridged_regions_close_the_loop(tmp_path, mosquitto):  # noqa: F811
    central = mosquitto(deploy_conf=(DEPLOY / "central.conf").read_text())
    regional = {r: mosquitto(deploy_conf=region_conf(r, central.port)) for r in REGIONS}
    clock = SimClock(SPEED)
    regions_file = tmp_path / "regions.json"
    regions_file.write_text(json.dumps({"regions": {r: {"prefixes": [f"gw{r[0]}-"]} for r in REGIONS}}))
    view = RegionView(RegionMap.from_file(regions_file), {"rk": REGION_KEY}, round_ms=2000)
    total_gateways = PER_REGION * len(REGIONS)
    fleets = {r: FleetThread(FleetSpec("127.0.0.1", regional[r].port, gateways=PER_REGION,
                                       devices_per_gateway=10, seed=11 + j, clock_spec=clock.spec(),
                                       key=CTL_KEY, thermostatic_fraction=0.0, id_prefix=f"gw{r[0]}"))
              for j, r in enumerate(REGIONS)}
    total_kw = sum(f.total_w() for f in fleets.values()) / 1000.0
    goal_kw = round(0.5 * total_kw)
    core = ControllerCore("ctl-centre", ConstantGoal(goal_kw), "k1", CTL_KEY, regions=view, round_ms=2000,
                          params=ControlParams(round_s=2.0, ramp_share_per_round=0.0))
    watch = Observer(central)             # everything the central broker carries
    aggs = [aggregator(tmp_path, regional[r], clock, r, f"agg-{r}", regions_file) for r in REGIONS]
    ctl = None
    try:
        time.sleep(1.5)                   # bridges connected, aggregators subscribed
        for fleet in fleets.values():
            fleet.start()
        ctl = ControllerThread(core, "127.0.0.1", central.port, clock).start()
        wait(lambda: any(r.n_fresh == total_gateways for r in core.records), 30,
             "every gateway of both regions heard at the centre")
        for fleet in fleets.values():
            fleet.wait_for(lambda agents: all(a.metrics["vectors_applied"] >= 3 for a in agents), 30)
        time.sleep(8 * 2.0 / SPEED)
        achieved = []
        for _ in range(10):
            time.sleep(2.0 / SPEED)
            achieved.append(sum(f.last_enabled_w() for f in fleets.values()) / 1000.0)
    finally:
        if ctl is not None:
            ctl.stop()
        for fleet in fleets.values():
            fleet.stop()
        stop(aggs)
    seen = [m.topic for m in watch.messages]
    watch.close()
    late = core.records[-10:]
    assert core.aggregator.counters["states"] == 0            # the controller read no gateway state
    assert not any(t.endswith("/state") for t in seen), "a state report crossed a bridge"
    assert {t for t in seen if t.startswith("colorgrid/v1/region/")} == {f"colorgrid/v1/region/{r}/g0/sum"
                                                                          for r in REGIONS}
    assert core.regions.inbox.accepted > 0 and not core.rejected, core.rejected
    assert {r: core.regions.inbox.latest(r, "g0") is not None for r in REGIONS} == {r: True for r in REGIONS}
    assert sum(r.n_fresh == total_gateways and r.n_missing == 0 for r in late) >= 0.8 * len(late)
    for r, fleet in fleets.items():                            # vectors crossed centre -> region
        assert all(a.metrics["vectors_applied"] >= 3 for a in fleet.agents), r
        assert all(a.metrics["connection_losses"] == 0 for a in fleet.agents), r
    mean = sum(achieved) / len(achieved)
    print(f"bridged: goal {goal_kw} kW of {total_kw:.0f}, achieved mean {mean:.1f} kW "
          f"({min(achieved):.1f}..{max(achieved):.1f}) over {len(achieved)} rounds; "
          f"{sum(t.endswith('/sum') for t in seen)} region sums at the centre")
    # one random first-round shed of whole devices, refractory for the rest of the run (as in
    # test_region_tree): within 20 % of the goal; the controller's view must equal the truth
    assert abs(mean - goal_kw) < 0.2 * goal_kw, (mean, achieved)
    assert abs(core.records[-1].measured_kw - achieved[-1]) < 0.05 * goal_kw, (core.records[-1].measured_kw,
                                                                                achieved[-1])
    assert all(p.returncode == 0 for p in aggs), [p.returncode for p in aggs]
