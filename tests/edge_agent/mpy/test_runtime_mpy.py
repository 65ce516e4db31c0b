"""The gateway agent under both runtimes on the in-memory broker.

Run as a script it drives one scenario (connect, birth, signed vector, forged/expired/replayed
vectors, fail-safe on controller offline, broker outage with store-and-forward, reconnect with
rebirth, a signed rebirth command) and prints every message the broker accepted plus the agent's
rejection reasons; tests/edge_agent/test_runtime_under_micropython.py requires byte-identical
output from MicroPython and CPython.
"""
from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport import FakeBroker, FakeTransport

KEY = b"0123456789abcdef0123456789abcdef"
T0 = 1700000000000
GROUP = "bus1.a"


def scenario():
    broker = FakeBroker()
    devices = [ConstantDevice("d%d" % i, 700 + 100 * i, (0.5, 0.3, 0.2)) for i in range(6)]
    core = GatewayCore("gw-1", devices, AgentParams(fail_safe_s=20), seed=11)
    agent = GatewayAgent(core, FakeTransport(broker, "colorgrid-gw-gw-1"), "gw-1", GROUP,
                         {"k1": KEY}, Prng(5), store_capacity=2, log=lambda level, msg: None)

    def vec(round_id, p_on, p_off, t, key=KEY):
        broker.route("ctl", topics.vector(GROUP),
                     security.make_vector(GROUP, round_id, p_on, p_off, t, 8000, "k1", key), 1, False)

    t = T0
    agent.tick(t)
    vec(1, [0.0, 0.0, 0.0], [0.6, 0.4, 1.0], t + 10)
    for r in range(1, 4):
        t = T0 + 2000 * r
        agent.tick(t)
    vec(2, [0.5, 0.5, 0.0], [0.0, 0.0, 0.0], t + 10, key=b"x" * 32)
    vec(1, [0.5, 0.5, 0.0], [0.0, 0.0, 0.0], t + 10)
    vec(3, [0.5, 0.5, 0.0], [0.0, 0.0, 0.0], t - 30000)
    vec(4, [0.3, 0.3, 0.0], [0.2, 0.2, 0.0], t + 10)
    broker.route("ctl", topics.vector(GROUP), b'{"v":1,"p_on":[2]}', 1, False)
    t += 2000
    agent.tick(t)
    broker.route("ctl", topics.controller_status(), security.make_status("ctl", False, t, T0, "k1", KEY), 1, True)
    t += 2000
    agent.tick(t)
    broker.stop()
    for _ in range(4):
        t += 2000
        agent.tick(t)
    broker.start()
    while not agent.connected:
        t += 250
        agent.tick(t)
    broker.route("ctl", topics.cmd("gw-1"),
                 security.make_cmd("tx-1", "rebirth", t, 5000, "k1", KEY), 1, False)
    t += 2000
    agent.tick(t)
    return broker, agent


def checked_scenario():
    broker, agent = scenario()
    kinds = [codec.decode(topic, payload)[0] for (_c, topic, payload, _q, _r) in broker.log
             if topic.startswith(topics.GW_PREFIX)]
    assert kinds.count("birth") == 3 and kinds.count("resp") == 1
    assert agent.metrics["rejected"] == 4
    assert agent.store.dropped == agent.metrics["reports_stored"] - 2 > 0  # capacity 2
    assert agent.bd_seq == 1
    return broker, agent


def test_runtime_scenario():
    checked_scenario()


if __name__ == "__main__":
    broker, agent = checked_scenario()
    for client, topic, payload, qos, retain in broker.log:
        print(client, topic, qos, retain, payload.decode())
    for topic, reason in agent.rejections:
        print("rejected", topic, reason)
    print("metrics", sorted(agent.metrics.items()))
    print("done")
