"""End to end over a real mosquitto: 20 gateways × 20 devices running the real edge_agent code
and the cloud controller service track a regulation signal; tracking error is bounded (not
just "it ran"), every gateway stays in its session, nothing is rejected."""
import pytest

from cloud.clock import SimClock
from cloud.goals import RegulationGoal
from cloud.goals import FractionOfDemand
from cloud.rounds import ControllerCore
from firmware_sim.broker import MosquittoBroker
from firmware_sim.closed_loop import run_closed_loop
from firmware_sim.gateway_fleet import FleetSpec

pytestmark = pytest.mark.broker
KEY = b"e" * 32


def test_small_fleet_tracks_regulation_signal():
    broker = MosquittoBroker().start()
    try:
        clock = SimClock(20.0)
        goal = FractionOfDemand(RegulationGoal(0.5, 0.15, start_ms=clock.origin_ms))
        core = ControllerCore("e2e", goal, "k1", KEY, round_ms=2000)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=20, devices_per_gateway=20, seed=5,
                         clock_spec=clock.spec(), key=KEY, thermostatic_fraction=0.2)
        result = run_closed_loop("127.0.0.1", broker.port, spec, core, clock, 9 * 60.0, processes=1)
    finally:
        broker.close()
    track = result.tracking(180.0, goal)
    fig = result.figures()
    assert track["rounds_scored"] >= 150                 # 6 min of complete rounds after warm-up
    assert track["rms_pct_of_capacity"] < 5.0, track      # measured ≈ 2.1 % (400 devices: 1/√n noise)
    assert track["pjm_score"] >= 0.9, track               # measured ≈ 0.997
    assert fig["gateways"] == 20 and fig["connects"] == 20
    assert fig["messages_rejected_by_controller"] == 0 and fig["vectors_rejected"] == 0
    assert fig["messages_rejected_foreign_topic"] == 0     # mosquitto delivers only what was subscribed
    assert fig["controller_missed_rounds"] == 0
    assert fig["rounds_with_fresh_vector_pct"] > 95.0
    # the achieved series is the gateways' own ground truth, not the controller's view
    rows = result.complete_rows(180.0)
    assert abs(rows[:, 2] - rows[:, 1]).max() < 0.15 * track["capacity_kw"]
