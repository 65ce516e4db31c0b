"""The gateway agent on the MicroPython transport (edge_agent.transport_umqtt over micropython-lib's
umqtt.simple, unchanged) against a real mosquitto child and a real `colorgrid controller`, under
CPython through a socket shim with MicroPython's stream API (tests/integration/mpy_umqtt).

One scenario, in order:
1. the agent connects (MQTT 3.1.1, persistent session, Last Will) and applies signed vectors;
2. the broker restarts (SIGTERM, same port, persistence): umqtt's blocking read sees EOF, the
   agent's one reconnect policy brings it back, it re-subscribes, re-births, flushes the reports
   it stored, and applies the controller's vectors again (newer round ids);
3. the controller falls silent (SIGSTOP: no vector, no Will yet): the agent enters fail-safe
   after its `fail_safe_ms`, while the retained controller status still says online.
"""
import json
import signal
import threading
import time

import pytest

from cloud.clock import SimClock
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport_umqtt import UmqttTransport
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.integration.fleet_harness import controller_proc
from tests.integration.mpy_umqtt import socket_shim
from tests.integration.mpy_umqtt.umqtt import simple as umqtt_simple

pytestmark = pytest.mark.broker
KEY = b"m" * 32
GW, GROUP = "gw-mpy1", "g0"
FAIL_SAFE_S = 6


class AgentThread:
    """The agent's own real-time loop (`run_forever`) on a thread; every round recorded as
    (ts_ms, applied a vector, vector_round_id, fail_safe, controller_online, last_vector_ms)."""

    def __init__(self, agent: GatewayAgent, clock: SimClock) -> None:
        self.agent, self.rounds, self.logs = agent, [], []
        self._stop = threading.Event()
        run_round = agent.run_round

        def recording(now_ms):
            applied = agent.metrics["vectors_applied"]
            run_round(now_ms)
            self.rounds.append((now_ms, agent.metrics["vectors_applied"] > applied, agent.vector_round_id,
                                agent.fail_safe, agent.controller_online, agent.last_vector_ms))
        agent.run_round = recording
        self.thread = threading.Thread(target=agent.run_forever, daemon=True,
                                       args=(clock.now_ms, lambda ms: time.sleep(ms / 1000), self._stop.is_set))

    def applied_since(self, t_ms: int) -> list:
        return [r for r in self.rounds if r[0] >= t_ms and r[1]]

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_umqtt_agent_real_broker_restart_and_silent_controller(tmp_path, mosquitto, monkeypatch):  # noqa: F811
    monkeypatch.setattr(umqtt_simple, "socket", socket_shim)   # MicroPython's socket API on CPython
    broker = mosquitto(persistence=True)
    clock = SimClock(1.0)
    key_file = tmp_path / "ctl.key"
    key_file.write_text(json.dumps({"k1": KEY.hex()}))
    devices = [ConstantDevice("d%02d" % i, 1000, (0.5, 0.3, 0.2)) for i in range(10)]
    core = GatewayCore(GW, devices, AgentParams(fail_safe_s=FAIL_SAFE_S), seed=5)
    transport = UmqttTransport(broker.host, broker.port, "colorgrid-gw-" + GW, keepalive_s=5,
                               client_factory=umqtt_simple.MQTTClient)
    logs = []
    agent = GatewayAgent(core, transport, GW, GROUP, {"k1": KEY}, Prng(9), backoff_base_ms=200,
                         backoff_cap_ms=2000, log=lambda level, msg: logs.append((level, msg)))
    runner = AgentThread(agent, clock)
    ctl = controller_proc(broker.port, clock, key_file, None, 6.0, 2.0, tmp_path / "ctl.log")
    try:
        runner.thread.start()
        # 1. vectors applied through umqtt
        _wait(lambda: len(runner.applied_since(0)) >= 3, 40, "3 rounds with a vector before the restart")
        assert isinstance(agent.transport.client, umqtt_simple.MQTTClient)
        before = max(r[2] for r in runner.applied_since(0))

        # 2. broker restart: lost, reconnected (new bd_seq), vectors applied again
        broker.stop()
        _wait(lambda: not agent.connected, 15, "the agent notices the broker is gone")
        time.sleep(1.0)
        broker.start()
        t_back = clock.now_ms()
        _wait(lambda: agent.connected and agent.metrics["connects"] >= 2, 30, "reconnect")
        assert agent.bd_seq == 1                        # second session: births 0 then 1
        _wait(lambda: len(runner.applied_since(t_back)) >= 3, 40, "3 rounds with a vector after the restart")
        after = runner.applied_since(t_back)
        assert min(r[2] for r in after) > before        # the controller's new rounds, never a replay
        assert agent.store.depth == 0                   # reports stored while offline were flushed
        assert any("connection lost" in m for _lvl, m in logs), logs

        # 3. the controller falls silent (no vector, the broker still holds its status online)
        ctl.send_signal(signal.SIGSTOP)
        t_silent = clock.now_ms()
        _wait(lambda: agent.fail_safe, FAIL_SAFE_S + 10, "fail-safe after the controller fell silent")
        entered = next(r for r in runner.rounds if r[0] >= t_silent and r[3])
        # fail-safe counts from the last vector's acceptance (on arrival, `last_vector_ms`), not
        # from the round that put it in force, which under load comes up to a round later
        last_applied = max(r[5] for r in runner.rounds if r[5] is not None and r[0] <= entered[0])
        assert entered[4] is True                       # not the controller's Will: silence alone
        assert entered[0] - last_applied >= FAIL_SAFE_S * 1000
        assert entered[0] - last_applied <= FAIL_SAFE_S * 1000 + 2 * 2000 + 1000
    finally:
        if ctl.poll() is None:
            ctl.send_signal(signal.SIGCONT)
            ctl.terminate()
            ctl.wait(15)
        runner.stop()
    rounds = len(runner.rounds)
    print(f"umqtt agent: {rounds} rounds, {agent.metrics['vectors_applied']} with a vector, "
          f"{agent.metrics['connects']} connects, fail-safe {(entered[0] - last_applied) / 1000:.1f} s "
          f"after the last vector")
