"""The agent over UmqttTransport, on an in-memory broker through a client with umqtt.simple's
exact call signatures (bytes topics, ``publish(topic, msg, retain=False, qos=0)``,
``set_last_will(topic, msg, retain=False, qos=0)``, ``check_msg()`` calling back with bytes).
Runs under MicroPython (tests/edge_agent/test_micropython.py) and CPython (pytest)."""
from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport import FakeBroker, FakeTransport
from edge_agent.transport_umqtt import UmqttTransport

KEY = b"u" * 32
T0 = 1700000000000
BROKER = FakeBroker()


class UmqttLikeClient:
    """umqtt.simple.MQTTClient's interface, backed by FakeBroker (types checked like the wire)."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        assert isinstance(client_id, bytes)
        self.link = FakeTransport(BROKER, client_id.decode())
        self.cb = None
        self.will = None
        self.pings = 0

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert isinstance(topic, bytes) and isinstance(retain, bool) and qos in (0, 1, 2)
        self.will = (topic.decode(), msg, qos, retain)

    def connect(self, clean_session=True):
        assert clean_session is False  # the agent wants a persistent session
        self.link.connect(self.will)
        return 0

    def publish(self, topic, msg, retain=False, qos=0):
        assert isinstance(topic, bytes) and isinstance(retain, bool) and qos in (0, 1, 2)
        self.link.publish(topic.decode(), msg, qos, retain)

    def subscribe(self, topic, qos=0):
        assert isinstance(topic, bytes)
        self.link.subscribe(topic.decode(), qos)

    def ping(self):
        self.pings += 1

    def check_msg(self):
        if not self.link.is_connected():
            raise OSError(-1)
        if self.link.inbox:
            topic, msg = self.link.inbox.pop(0)
            self.cb(topic.encode(), msg)

    def disconnect(self):
        self.link.disconnect()


def test_agent_over_umqtt_transport():
    core = GatewayCore("gw-u", [ConstantDevice("d1", 1000, (0.5, 0.3, 0.2))], seed=2)
    transport = UmqttTransport("broker", 1883, "colorgrid-gw-gw-u", keepalive_s=0,
                               client_factory=UmqttLikeClient)
    agent = GatewayAgent(core, transport, "gw-u", "g", {"k1": KEY}, Prng(2),
                         log=lambda level, msg: None)
    agent.tick(T0)
    birth = codec.decode_birth(BROKER.retained[topics.birth("gw-u")][0])
    assert birth["bd_seq"] == 0 and birth["devices"][0]["tier_w"] == [500, 300, 200]
    BROKER.route("ctl", topics.vector("g"),
                 security.make_vector("g", 1, [0, 0, 0], [1, 0, 0], T0, 5000, "k1", KEY), 1, False)
    agent.tick(T0 + 2000)
    assert agent.metrics["vectors_applied"] == 1
    states = [codec.decode_state(p) for (_c, t, p, _q, _r) in BROKER.log if t == topics.state("gw-u")]
    assert states[-1]["p_w"][0] == [0, 0, 0, 500] and states[-1]["seq"] == 2
    BROKER.kill_client("colorgrid-gw-gw-u")  # socket dies: the Will is published ...
    death = codec.decode_death(BROKER.retained[topics.death("gw-u")][0])
    assert death["bd_seq"] == 0 and death["reason"] == "lost"
    agent.tick(T0 + 4000)  # ... and the agent notices on check_msg, stores the report
    assert not agent.connected and agent.store.depth == 1
    t = T0 + 4000
    while not agent.connected:
        t += 100
        agent.tick(t)
    assert codec.decode_birth(BROKER.retained[topics.birth("gw-u")][0])["bd_seq"] == 1
    assert agent.store.depth == 0


if __name__ == "__main__":
    test_agent_over_umqtt_transport()
    print("done")
