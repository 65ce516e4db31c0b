"""Broker killed and restarted mid-run (mosquitto with persistence, persistent sessions): every
agent reconnects and re-births, control resumes within 10 s, and no QoS-1 vector published after
the controller's reconnect is lost: every gateway receives every one of them, in order — including
the vectors published while the gateways were still away (queued in their persistent sessions,
which survive the broker restart through mosquitto's persistence file)."""
import time

import pytest

from cloud.clock import SimClock
from cloud.goals import ConstantGoal
from cloud.rounds import ControllerCore
from firmware_sim.broker import MosquittoBroker
from firmware_sim.closed_loop import ControllerThread
from firmware_sim.gateway_fleet import FleetSpec
from tests.integration.fleet_harness import FleetThread

pytestmark = pytest.mark.broker
KEY = b"b" * 32
ROUND_S = 0.5


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_reconnect_rebirth_no_vector_lost(tmp_path, hard):
    broker = MosquittoBroker(persistence=True, workdir=str(tmp_path)).start()
    fleet = ctl = None
    try:
        clock = SimClock(1.0)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=8, devices_per_gateway=10, round_s=ROUND_S,
                         fail_safe_s=3.0, t_ref_s=(1.0, 0.5, 1.0, 0.5), clock_spec=clock.spec(), key=KEY,
                         thermostatic_fraction=0.0, seed=21)
        fleet = FleetThread(spec).start()
        core = ControllerCore("ctlb", ConstantGoal(0.5 * fleet.total_w() / 1000.0), "k1", KEY,
                              round_ms=int(ROUND_S * 1000), ttl_ms=10_000)
        ctl = ControllerThread(core, "127.0.0.1", broker.port, clock).start()
        fleet.wait_for(lambda ag: all(not a.fail_safe and a.vector_round_id > 0 for a in ag), 15.0)
        time.sleep(1.0)   # let autosave (1 s) write the sessions: matters for the SIGKILL case
        bd_before = {a.gateway_id: a.bd_seq for a in fleet.agents}
        round_before = core.round_id

        broker.stop(hard=hard)
        time.sleep(1.5)
        fleet.paused.set()            # gateways come back only after the controller has published
        broker.start()
        t_up = time.monotonic()
        svc = ctl.service
        deadline = time.monotonic() + 10.0
        while svc.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert svc.connects == 2, "controller not back within 10 s of the broker"
        first_after = core.round_id + 1
        time.sleep(4 * ROUND_S)       # ≥ 3 vectors published while every gateway is away
        fleet.paused.clear()          # from here the gateways may reconnect: control back ≤ 10 s
        t_gateways = time.monotonic()
        fleet.wait_for(lambda ag: all(a.connected for a in ag), 10.0)
        resumed = fleet.wait_for(lambda ag: all(not a.fail_safe and a.vector_round_id > round_before
                                                for a in ag), 10.0)
        assert time.monotonic() - t_gateways <= 10.0 and resumed <= 10.0
        for a in fleet.agents:    # re-birth: a new session counter, one more connect and birth
            assert a.bd_seq == (bd_before[a.gateway_id] + 1) % 256
            assert a.metrics["connects"] == 2 and a.metrics["births"] >= 2
        assert core.aggregator.counters["births"] >= 2 * spec.gateways
        time.sleep(3.0)
        ctl.stop()
        ctl = None
        time.sleep(0.5)
        after = [r.round_id for r in core.records if r.round_id >= first_after]
        assert len(after) >= 6
        for gid, seen in fleet.seen.items():
            got = [rid for rid in seen if rid in set(after)]
            assert got == after, f"{gid} missed {sorted(set(after) - set(got))}"
    finally:
        if ctl is not None:
            ctl.stop()
        if fleet is not None:
            fleet.stop()
        broker.close()


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_broker_restart_gateways_back_first_asks_no_rebirth(tmp_path, hard):
    """bench.faults broker_kill (issue 16): when the gateways were back before the controller,
    each one's new birth (QoS 1) waited in the controller's persistent session while its QoS-0
    states were dropped, and the controller asked every gateway for a rebirth ("session gap (seq
    7 after 0)"). Nothing was lost that a rebirth would bring back: none is asked."""
    import random

    from edge_agent.reconnect import Backoff

    broker = MosquittoBroker(persistence=True, workdir=str(tmp_path)).start()
    fleet = ctl = None
    try:
        clock = SimClock(1.0)
        spec = FleetSpec("127.0.0.1", broker.port, gateways=6, devices_per_gateway=10, round_s=ROUND_S,
                         fail_safe_s=3.0, t_ref_s=(1.0, 0.5, 1.0, 0.5), clock_spec=clock.spec(), key=KEY,
                         thermostatic_fraction=0.0, seed=22)
        fleet = FleetThread(spec).start()
        core = ControllerCore("ctlq", ConstantGoal(0.5 * fleet.total_w() / 1000.0), "k1", KEY,
                              round_ms=int(ROUND_S * 1000))
        ctl = ControllerThread(core, "127.0.0.1", broker.port, clock).start()
        fleet.wait_for(lambda ag: all(not a.fail_safe and a.vector_round_id > 0 for a in ag), 15.0)
        time.sleep(1.5)   # autosave (1 s) writes the sessions: matters for the SIGKILL case
        ctl.service.backoff = Backoff(random.Random(5), 8_000, 8_000)   # back 4-8 s after a loss
        round_before = core.round_id
        broker.stop(hard=hard)
        time.sleep(1.0)
        broker.start()
        svc = ctl.service
        assert fleet.wait_for(lambda ag: all(a.connected and a.metrics["births"] >= 2 for a in ag), 10.0) is not None
        assert svc.connects == 1, "the controller must come back after the gateways for this case"
        time.sleep(4 * ROUND_S)            # the gateways report (QoS 0) while the controller is away
        deadline = time.monotonic() + 15.0
        while svc.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert svc.connects == 2, "controller not back"
        resumed = fleet.wait_for(lambda ag: all(not a.fail_safe and a.vector_round_id > round_before
                                                for a in ag), 10.0)
        assert resumed is not None
        time.sleep(core.resync_grace_ms / 1000.0 + 4 * ROUND_S)   # past the grace: deferred ones sent
        for a in fleet.agents:             # the controller follows every gateway's new session
            assert core.aggregator.sessions[a.gateway_id].bd_seq == a.bd_seq
            assert a.metrics["commands"] == 0
        assert core.aggregator.counters["rebirth_requests"] == 0
    finally:
        if ctl is not None:
            ctl.stop()
        if fleet is not None:
            fleet.stop()
        broker.close()
