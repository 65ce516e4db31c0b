"""The aggregation tree over a real mosquitto: gateways (real edge_agent agents) → `colorgrid
aggregator` processes (MQTT 5) → the controller consuming region sums only.

1. Two regions, one exclusive aggregator each: the controller never reads a gateway state, hears
   every gateway through its region and tracks a constant goal.
2. One region served by two aggregators on the MQTT 5 shared subscription; one is SIGKILLed
   mid-run: its share moves to the other within a bounded number of rounds and no control round
   goes without a vector.
"""
import json
import signal
import time

import pytest

from cloud.clock import SimClock
from cloud.control_law import ControlParams
from cloud.goals import ConstantGoal
from cloud.region import RegionMap, RegionView
from cloud.rounds import ControllerCore
from firmware_sim.closed_loop import ControllerThread
from firmware_sim.gateway_fleet import FleetSpec
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.integration.fleet_harness import FleetThread
from tests.integration.region_harness import REGION_KEY
from tests.integration.region_harness import aggregator as _aggregator
from tests.integration.region_harness import stop as _stop
from tests.integration.region_harness import wait as _wait

pytestmark = pytest.mark.broker
CTL_KEY = b"c" * 32
SPEED = 4.0               # a 2-s round is 0.5 s of wall time
GATEWAYS = 8


def _setup(tmp_path, broker, regions: dict, goal_kw: float):
    clock = SimClock(SPEED)
    regions_file = tmp_path / "regions.json"
    regions_file.write_text(json.dumps({"regions": regions}))
    view = RegionView(RegionMap.from_file(regions_file), {"rk": REGION_KEY}, round_ms=2000)
    core = ControllerCore("ctl-region", ConstantGoal(goal_kw), "k1", CTL_KEY, regions=view, round_ms=2000,
                          params=ControlParams(round_s=2.0, ramp_share_per_round=0.0))
    spec = FleetSpec("127.0.0.1", broker.port, gateways=GATEWAYS, devices_per_gateway=10, seed=11,
                     clock_spec=clock.spec(), key=CTL_KEY, thermostatic_fraction=0.0)
    return clock, regions_file, core, spec


def test_two_regions_controller_tracks_goal_from_region_sums(tmp_path, mosquitto):  # noqa: F811
    broker = mosquitto(persistence=False)
    ids = [f"gw-{i:05d}" for i in range(GATEWAYS)]
    regions = {"west": {"gateways": ids[:4]}, "east": {"prefixes": ["gw-0000"]}}   # list wins, then prefix
    goal_kw = 70.0
    clock, regions_file, core, spec = _setup(tmp_path, broker, regions, goal_kw)
    fleet = FleetThread(spec)
    aggs = [_aggregator(tmp_path, broker, clock, r, f"agg-{r}", regions_file) for r in ("west", "east")]
    ctl = None
    try:
        time.sleep(1.0)                      # aggregators subscribed before the births
        fleet.start()
        ctl = ControllerThread(core, "127.0.0.1", broker.port, clock).start()
        total_kw = fleet.total_w() / 1000.0
        assert 0.3 * total_kw < goal_kw < 0.7 * total_kw, total_kw
        _wait(lambda: any(r.n_fresh == GATEWAYS for r in core.records), 20, "all gateways heard")
        time.sleep(12 * 2.0 / SPEED)         # a dozen rounds to settle (no recovery ramp)
        achieved = []
        for _ in range(20):                  # 20 rounds of ground truth from the gateways themselves
            time.sleep(2.0 / SPEED)
            achieved.append(fleet.last_enabled_w() / 1000.0)
    finally:
        if ctl is not None:
            ctl.stop()
        fleet.stop()
        _stop(aggs)
    late = [r for r in core.records if r.t_ms >= core.records[-1].t_ms - 20 * 2000]
    assert core.aggregator.counters["states"] == 0         # the controller read no gateway state
    assert core.regions.inbox.accepted > 0 and not core.rejected, core.rejected
    assert sum(r.n_fresh == GATEWAYS and r.n_missing == 0 for r in late) >= 0.8 * len(late)
    mean = sum(achieved) / len(achieved)
    print(f"two regions: goal {goal_kw} kW, achieved mean {mean:.1f} kW, "
          f"range {min(achieved):.1f}..{max(achieved):.1f} kW over {len(achieved)} rounds")
    # The first round sheds ~2/3 of the demand at once (ramp off) in whole 0.5–4.5 kW devices, and
    # what it switched off stays refractory for >= 120 s (longer than this run): the level lands
    # within a few devices of the goal and stays (measured 58.5–69 kW for 70 over repeated runs: one
    # random draw of whole devices decides it). Band: 20 % of the goal; the exactness of the tree is
    # asserted next, against the gateways' own truth.
    assert abs(mean - goal_kw) < 0.2 * goal_kw, (mean, achieved)
    # the tree is exact: the controller's view from the region sums is the gateways' own truth
    assert abs(core.records[-1].measured_kw - achieved[-1]) < 0.05 * goal_kw, (core.records[-1].measured_kw,
                                                                                achieved[-1])
    assert all(p.returncode == 0 for p in aggs), [p.returncode for p in aggs]


def test_shared_subscription_failover(tmp_path, mosquitto):  # noqa: F811
    broker = mosquitto(persistence=False)
    goal_kw = 70.0
    clock, regions_file, core, spec = _setup(tmp_path, broker, {"all": {"prefixes": ["gw-"]}}, goal_kw)
    fleet = FleetThread(spec)
    aggs = [_aggregator(tmp_path, broker, clock, "all", f"a{j}", regions_file, shared=True) for j in (1, 2)]
    ctl = None
    try:
        time.sleep(1.0)
        fleet.start()
        ctl = ControllerThread(core, "127.0.0.1", broker.port, clock).start()
        _wait(lambda: any(r.n_fresh == GATEWAYS for r in core.records), 20, "all gateways heard")
        time.sleep(6 * 2.0 / SPEED)
        merged = core.regions.inbox.latest("all", "g0")
        assert sorted(merged.partials) == ["a1", "a2"], merged.partials   # both share the region
        before = len(core.records)
        kill_ms = clock.now_ms()
        aggs[0].send_signal(signal.SIGKILL)
        time.sleep(10 * 2.0 / SPEED)
        after = [r for r in core.records[before:]]
        merged = core.regions.inbox.latest("all", "g0")
    finally:
        if ctl is not None:
            ctl.stop()
        fleet.stop()
        _stop(aggs)
    assert merged.partials == ["a2"]
    # no control round without a vector: a record is written only for a round that sent one, so
    # consecutive records one per 2-s boundary = every round controlled
    ts = [r.t_ms for r in after]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert len(after) >= 8 and all(g == 2000 for g in gaps), gaps
    assert ctl.service.missed_rounds == 0
    # rounds from the kill until every gateway is heard again (through a2 alone)
    recovered = next(r for r in after if r.t_ms > kill_ms and r.n_fresh == GATEWAYS)
    rounds_to_recover = (recovered.t_ms - kill_ms) // 2000 + 1
    print(f"failover: full coverage again {rounds_to_recover} round(s) after the kill; "
          f"coverage in those rounds {[r.n_fresh for r in after if kill_ms < r.t_ms <= recovered.t_ms]}")
    assert rounds_to_recover <= 3, [(r.t_ms - kill_ms, r.n_fresh) for r in after]
    assert not core.rejected, core.rejected
