"""End to end over a real mosquitto: 20 gateways × 20 devices running the real edge_agent code
and the cloud controller service track a regulation signal; tracking error is bounded (not
just "it ran"), every gateway stays in its session, nothing is rejected."""
import numpy as np
import pytest

from cloud.clock import SimClock
from cloud.goals import RegulationGoal
from cloud.goals import FractionOfDemand
from cloud.rounds import ControllerCore
from firmware_sim.broker import MosquittoBroker
from firmware_sim.closed_loop import SpeedGovernor, run_closed_loop
from firmware_sim.gateway_fleet import FleetSpec

pytestmark = pytest.mark.broker
KEY = b"e" * 32


def test_small_fleet_tracks_regulation_signal():
    broker = MosquittoBroker().start()
    try:
        # the loop runs as `colorgrid demo` does: an adaptive clock that slows itself down when
        # rounds fall behind (a loaded machine), so what is asserted holds at any load
        clock = SimClock.adaptive(20.0)
        governor = SpeedGovernor(clock, min_speed=2.5)
        goal = FractionOfDemand(RegulationGoal(0.5, 0.15, start_ms=clock.origin_ms))
        core = ControllerCore("e2e", goal, "k1", KEY, round_ms=2000)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=20, devices_per_gateway=20, seed=5,
                         clock_spec=clock.spec(), key=KEY, thermostatic_fraction=0.2,
                         shared_speed=clock.shared)
        result = run_closed_loop("127.0.0.1", broker.port, spec, core, clock, 9 * 60.0, processes=1,
                                 governor=governor)
    finally:
        broker.close()
    track = result.tracking(180.0, goal)
    fig = result.figures()
    assert governor.history[-1]["speed"] >= 2.5
    # What the loop guarantees on a busy machine (it starts at 20x: a round is 100 ms of wall
    # time, and a full test run keeps both cores busy; the governor halves the speed when the
    # loop falls behind). Timing-dependent figures
    # are bounded by what load can do to them, not by a quiet machine's values.
    assert track["rounds_scored"] >= 120                 # of 180 after warm-up (a late report makes a round incomplete)
    assert track["rms_pct_of_capacity"] < 5.0, track      # measured ≈ 2.1 % (400 devices: 1/√n noise)
    assert track["pjm_score"] >= 0.9, track               # measured ≈ 0.997
    assert fig["gateways"] == 20
    assert fig["connects"] == 20 + fig["connection_losses"]  # every lost link re-established
    assert fig["messages_rejected_by_controller"] == 0     # nothing malformed, whatever the load
    assert fig["messages_rejected_foreign_topic"] == 0     # mosquitto delivers only what was subscribed
    # a vector that arrives after its 3-round lifetime (300 ms wall here) or twice (QoS 1) is
    # refused by the agent's guard — and nothing else is
    assert fig["vectors_rejected"] == fig["vectors_rejected_expired"] + fig["vectors_rejected_as_replay"], fig
    assert fig["vectors_rejected"] <= 0.02 * fig["vectors_delivered"], fig
    assert fig["controller_missed_rounds"] <= 0.02 * fig["controller_rounds"], fig
    assert fig["rounds_with_fresh_vector_pct"] > 90.0, fig
    # the achieved series is the gateways' own ground truth, not the controller's view; a gateway
    # under load may apply a round's vector one round late, so each round is within the bound of
    # its own goal or of the previous round's
    rows = result.complete_rows(180.0)
    t, goal_kw, achieved = rows[:, 0], rows[:, 1], rows[:, 2]
    gap = np.abs(achieved - goal_kw)
    previous = np.full_like(goal_kw, np.inf)
    consecutive = np.isclose(np.diff(t), 2.0)
    previous[1:][consecutive] = np.abs(achieved[1:] - goal_kw[:-1])[consecutive]
    assert np.minimum(gap, previous).max() < 0.15 * track["capacity_kw"], (gap.max(), track)
    assert np.percentile(gap, 95) < 0.1 * track["capacity_kw"], track
