"""The lab broker config (deploy/mosquitto/) with password auth and per-gateway ACLs, run as is
on a private mosquitto: a gateway cannot publish as another, cannot forge control topics, cannot
read another gateway's commands; the real agent works within its ACL."""
import time
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
    """gw-2's credential running an agent that claims to be gw-1: the broker gives it client id
    gw-2 (use_username_as_clientid), so it cannot take gw-1's session, and the ACL drops every
    message it publishes under gw-1's subtree."""
    ctl = Observer(lab_broker, subscribe=("colorgrid/v1/gw/#",), username="controller",
                   password="ctl-secret")
    agent = make_agent(lab_broker, "gw-1", username="gw-1", password="pw-1")
    impostor = make_agent(lab_broker, "gw-1", username="gw-2", password="pw-2")  # claims to be gw-1
    agent.tick(T0)
    impostor.tick(T0)
    ctl.publish(topics.vector("bus1.a"),
                security.make_vector("bus1.a", 1, [0, 0, 0], [1, 0, 0], T0, 10_000, "k1", KEY))
    pump(agent, T0 + 100, lambda: agent.metrics["vectors_accepted"] == 1, what="vector via ACL")
    agent.tick(T0 + 2000)
    impostor.tick(T0 + 2000)
    pump(impostor, T0 + 2100, lambda: impostor.metrics["reports_sent"] >= 2, what="impostor reports")
    time.sleep(0.3)        # the impostor's publishes reach the broker before the barrier below
    agent.tick(T0 + 4000)  # a barrier: gw-1's third report arrives after everything above
    states = ctl.wait_topic(topics.state("gw-1"), 3)
    time.sleep(0.3)
    assert len(ctl.on(topics.state("gw-1"))) == 3          # the impostor's two never arrived
    assert codec.decode_state(states[1].payload)["vector_round_id"] == 1
    assert len(ctl.on(topics.birth("gw-1"))) == 1            # the real agent's birth only
    assert agent.metrics["connects"] == 1                    # never kicked off by the impostor
    assert impostor.metrics["reports_sent"] >= 2  # it believed it published: the broker dropped
    ctl.close()


def _session(broker, client_id, username, password, events):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, flags, rc, p: events.append((client_id, "connect", rc.value))
    client.on_disconnect = lambda c, u, flags, rc, p: events.append((client_id, "disconnect", rc.value))
    client.reconnect_delay_set(30, 30)         # a kicked session stays down for the whole test
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    return client


def test_client_ids_are_bound_to_user_names(lab_broker):
    """A second connection with a client id in use kicks the first off (MQTT). The lab config
    sets use_username_as_clientid, so whatever id a client asks for, it gets its user name:
    gw-2's credential asking for gw-1's (or the controller's) id leaves those sessions alone."""
    events = []
    victims = [_session(lab_broker, "colorgrid-gw-gw-1", "gw-1", "pw-1", events),
               _session(lab_broker, "ctl-ctl1", "controller", "ctl-secret", events)]
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    for client_id in ("colorgrid-gw-gw-1", "gw-1", "ctl-ctl1", "controller"):
        intruder = _session(lab_broker, client_id, "gw-2", "pw-2", [])
        time.sleep(0.3)
        intruder.disconnect()
        intruder.loop_stop()
    time.sleep(0.3)
    assert sorted(events) == [("colorgrid-gw-gw-1", "connect", 0), ("ctl-ctl1", "connect", 0)], events
    for client in victims:
        client.disconnect()
        client.loop_stop()


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
