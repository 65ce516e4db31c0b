"""The lab broker config (deploy/mosquitto/) with password auth and per-gateway ACLs, run as is
on a private mosquitto: a gateway cannot publish as another, cannot forge control topics, cannot
read another gateway's commands; the real agent works within its ACL."""
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_agent import codec, security, topics
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import KEY, Observer, make_agent, pump

pytestmark = pytest.mark.broker
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
USERS = {"controller": "ctl-secret", "dispatcher": "dsp-secret", "gw-1": "pw-1", "gw-2": "pw-2"}
T0 = 1_700_000_000_000


@pytest.fixture
def lab_broker(mosquitto):
    return mosquitto(users=USERS, acl=(DEPLOY / "colorgrid.acl").read_text(),
                     deploy_conf=(DEPLOY / "colorgrid.conf").read_text())


def test_no_anonymous_and_no_wrong_password(lab_broker):
    anonymous = Observer(lab_broker, subscribe=())
    wrong = Observer(lab_broker, subscribe=(), username="gw-1", password="bad")
    ok = Observer(lab_broker, subscribe=(), username="gw-1", password="pw-1")
    assert anonymous.connack != 0 and wrong.connack != 0 and ok.connack == 0
    for client in (anonymous, wrong, ok):
        client.close()


def test_gateway_cannot_publish_as_another_or_forge_control(lab_broker):
    ctl = Observer(lab_broker, subscribe=("colorgrid/v1/gw/#",), username="controller",
                   password="ctl-secret")
    gw2 = Observer(lab_broker, subscribe=(topics.ALL_VECTORS,), username="gw-2", password="pw-2")
    gw1 = Observer(lab_broker, subscribe=(), username="gw-1", password="pw-1")
    gw1.publish(topics.state("gw-2"), b"forged state of gw-2")
    gw1.publish(topics.birth("gw-2"), b"forged birth of gw-2", retain=True)
    gw1.publish(topics.vector("bus1.a"), b"forged vector")
    gw1.publish(topics.state("gw-1"), b"own state")  # same connection: arrives after the above
    ctl.publish(topics.vector("bus1.a"), b"real vector")
    ctl.wait_topic(topics.state("gw-1"))
    gw2.wait_topic(topics.vector("bus1.a"))
    assert [m.payload for m in ctl.messages] == [b"own state"]
    assert [m.payload for m in gw2.messages] == [b"real vector"]
    for client in (ctl, gw1, gw2):
        client.close()


def test_gateway_reads_only_its_own_commands(lab_broker):
    gw1 = Observer(lab_broker, subscribe=(topics.cmd("gw-2"), topics.cmd("gw-1")),
                   username="gw-1", password="pw-1")
    ctl = Observer(lab_broker, subscribe=(), username="controller", password="ctl-secret")
    ctl.publish(topics.cmd("gw-2"), b"for gw-2")
    ctl.publish(topics.cmd("gw-1"), b"for gw-1")
    gw1.wait_topic(topics.cmd("gw-1"))
    assert [m.payload for m in gw1.messages] == [b"for gw-1"]
    for client in (ctl, gw1):
        client.close()


def test_real_agent_within_its_acl_and_an_impostor_is_silenced(lab_broker):
    ctl = Observer(lab_broker, subscribe=("colorgrid/v1/gw/#",), username="controller",
                   password="ctl-secret")
    agent = make_agent(lab_broker, "gw-1", username="gw-1", password="pw-1")
    impostor = make_agent(lab_broker, "gw-2", username="gw-1", password="pw-1")  # logs in as gw-1
    agent.tick(T0)
    impostor.tick(T0)
    ctl.publish(topics.vector("bus1.a"),
                security.make_vector("bus1.a", 1, [0, 0, 0], [1, 0, 0], T0, 10_000, "k1", KEY))
    pump(agent, T0 + 100, lambda: agent.metrics["vectors_accepted"] == 1, what="vector via ACL")
    agent.tick(T0 + 2000)
    impostor.tick(T0 + 2000)
    agent.tick(T0 + 4000)  # a barrier: gw-1's third report arrives after everything above
    states = ctl.wait_topic(topics.state("gw-1"), 3)
    assert codec.decode_state(states[1].payload)["vector_round_id"] == 1
    assert codec.decode_birth(ctl.on(topics.birth("gw-1"))[0].payload)["gateway_id"] == "gw-1"
    assert not [m for m in ctl.messages if "/gw-2/" in m.topic]
    assert impostor.metrics["reports_sent"] >= 2  # it believed it published: the broker dropped
    ctl.close()


def test_only_the_dispatcher_writes_dispatches_and_gateways_cannot_read_them(lab_broker):
    ctl = Observer(lab_broker, subscribe=(topics.ALL_DISPATCH,), username="controller",
                   password="ctl-secret")
    gw1 = Observer(lab_broker, subscribe=(topics.ALL_DISPATCH, topics.ALL_VECTORS), username="gw-1",
                   password="pw-1")
    dsp = Observer(lab_broker, subscribe=(), username="dispatcher", password="dsp-secret")
    gw1.publish(topics.dispatch("bus1.a"), b"forged dispatch")
    ctl.publish(topics.dispatch("bus1.a"), b"controller may not dispatch")
    dsp.publish(topics.vector("bus1.a"), b"dispatcher may not send vectors")
    dsp.publish(topics.dispatch("bus1.a"), b"real dispatch")
    ctl.wait_topic(topics.dispatch("bus1.a"))
    assert [m.payload for m in ctl.messages] == [b"real dispatch"]
    dsp.publish(topics.dispatch("bus1.b"), b"second")       # a barrier for gw-1's (empty) view
    ctl.wait_topic(topics.dispatch("bus1.b"))
    assert gw1.messages == []
    for client in (ctl, gw1, dsp):
        client.close()
