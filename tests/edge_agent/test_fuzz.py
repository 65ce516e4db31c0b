"""Fuzz every topic the agent subscribes to: no payload crashes it, each bad one is rejected with
a logged reason, and the agent keeps reporting.

CI runs COLORGRID_FUZZ_EXAMPLES examples per test (default 750, i.e. 3000 payloads in all).
The long run (100k payloads per test):

    COLORGRID_FUZZ_EXAMPLES=100000 python -m pytest -q tests/edge_agent/test_fuzz.py
"""
import json
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport import FakeBroker, FakeTransport

EXAMPLES = int(os.environ.get("COLORGRID_FUZZ_EXAMPLES", "750"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEY = b"q" * 32
GW, GROUP = "gw-f", "g"
T0 = 1_700_000_000_000
SUBSCRIBED = topics.gateway_subscriptions(GW, GROUP)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20)


class Harness:
    def __init__(self):
        self.logs = []
        self.broker = FakeBroker()
        core = GatewayCore(GW, [ConstantDevice("d1", 1000, (0.5, 0.3, 0.2))], seed=1)
        self.agent = GatewayAgent(core, FakeTransport(self.broker, "c"), GW, GROUP, {"k1": KEY},
                                  Prng(1), log=lambda level, msg: self.logs.append((level, msg)))
        self.agent.tick(T0)
        self.sent = 0

    def feed(self, topic, payload):
        self.sent += 1
        self.agent.handle(topic, payload, T0 + 1000)  # must not raise

    def check(self):
        a = self.agent
        accepted = a.metrics["vectors_accepted"] + a.metrics["commands"]
        assert a.metrics["rejected"] + accepted == self.sent
        warnings = [m for level, m in self.logs if level == "warning" and m.startswith("rejected")]
        assert len(warnings) == a.metrics["rejected"]
        assert all(": " in m for m in warnings)  # "rejected 'topic': field: reason"
        a.tick(T0 + 2000)  # still runs rounds and publishes


def valid_messages():
    vec = json.loads(security.make_vector(GROUP, 5, [0.1, 0.2, 0.0], [0.3, 0.0, 0.0], T0, 5000,
                                          "k1", KEY))
    cmd = json.loads(security.make_cmd("t1", "config_set", T0, 5000, "k1", KEY, {"round_ms": 1000}))
    status = json.loads(security.make_status("ctl", True, T0, T0, "k1", KEY))
    return {SUBSCRIBED[0]: vec, SUBSCRIBED[1]: status, SUBSCRIBED[2]: cmd}


VALID = valid_messages()


@FUZZ
@given(st.sampled_from(SUBSCRIBED), st.binary(max_size=300))
def test_random_bytes(topic, payload):
    h = Harness()
    h.feed(topic, payload)
    assert h.agent.metrics["rejected"] == 1
    h.check()


@FUZZ
@given(st.sampled_from(SUBSCRIBED), json_values)
def test_random_json(topic, value):
    h = Harness()
    h.feed(topic, json.dumps(value).encode())
    assert h.agent.metrics["rejected"] == 1
    h.check()


@FUZZ
@given(st.sampled_from(SUBSCRIBED), st.data())
def test_mutated_valid_messages(topic, data):
    msg = dict(VALID[topic])
    field = data.draw(st.sampled_from(sorted(msg) + ["extra"]))
    action = data.draw(st.sampled_from(["replace", "delete"]))
    if action == "delete" and field in msg:
        del msg[field]
    else:
        msg[field] = data.draw(json_values)
    h = Harness()
    h.feed(topic, json.dumps(msg, allow_nan=True).encode())
    m = h.agent.metrics
    if topic == topics.controller_status():
        # signed: a mutated status is rejected (a "mutation" to the same value is not one)
        assert m["rejected"] in (0, 1)
    else:
        assert m["rejected"] == 1 or (m["vectors_accepted"] + m["commands"]) == 1
    assert h.agent.metrics["rejected"] == len([1 for lv, s in h.logs if s.startswith("rejected")])
    h.agent.tick(T0 + 2000)


@FUZZ
@given(st.binary(max_size=80), st.binary(max_size=50))
def test_random_topics(topic, payload):
    h = Harness()
    h.feed(topic, payload)
    assert h.agent.metrics["rejected"] == 1
    h.check()
