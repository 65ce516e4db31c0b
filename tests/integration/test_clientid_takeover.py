"""Client-id takeover on the lab broker, and a forged retained status on a broker without ACLs
(issue 16 item 5), against a real mosquitto child and a real `colorgrid controller` process.

- Lab config (deploy/mosquitto, run as is on a free port): a gateway credential connecting with
  the controller's client id `ctl-ctl1` (or the user name `controller`) used to take over the
  controller's session — MQTT lets a second connection with the same client id kick the first —
  so the broker published the controller's genuine signed offline Will and every gateway went
  fail-safe. With client ids bound to user names the intruder only gets its own id: the
  controller stays connected and the status never says offline. Same for another gateway's id.
- No ACLs (anonymous broker): any client can overwrite the retained status; the controller hears
  its status topic and re-asserts its own signed online status, so a late subscriber (a gateway
  that connects afterwards) reads the genuine one.
"""
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud.clock import SimClock
from edge_agent import codec, security, topics
from firmware_sim.broker import MosquittoBroker
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import Observer
from tests.integration.fleet_harness import controller_proc

pytestmark = pytest.mark.broker
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
USERS = {"controller": "ctl-secret", "dispatcher": "dsp-secret", "gw-1": "pw-1", "gw-2": "pw-2"}
KEY = b"t" * 32
STATUS = topics.controller_status()


def lab_conf() -> str:
    return (DEPLOY / "colorgrid.conf").read_text()


def statuses(observer):
    """Decoded controller statuses the observer received, in order (undecodable ones as None)."""
    out = []
    for m in observer.on(STATUS):
        try:
            out.append(codec.decode(STATUS, m.payload)[2])
        except codec.CodecError:
            out.append(None)
    return out


def intruder(broker, client_id, username, password, hold_s=0.4):
    """Connect with `client_id` under someone else's credentials, hold, disconnect; the CONNACK."""
    got = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, rc, p: got.setdefault("rc", rc.value)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    time.sleep(hold_s)
    client.disconnect()
    client.loop_stop()
    return got.get("rc")


def test_gateway_credential_cannot_take_the_controller_client_id(mosquitto, tmp_path):
    broker = mosquitto(users=USERS, acl=(DEPLOY / "colorgrid.acl").read_text(), deploy_conf=lab_conf())
    (tmp_path / "key.hex").write_text(KEY.hex())
    (tmp_path / "ctl.pw").write_text("ctl-secret\n")
    log = tmp_path / "controller.log"
    ctl = controller_proc(broker.port, SimClock(1.0), tmp_path / "key.hex", None, 1.0, 0.5, log,
                          extra=["--username", "controller", "--password-file", str(tmp_path / "ctl.pw"),
                                 "--log-level", "INFO"])
    try:
        gw = Observer(broker, subscribe=(STATUS,), username="gw-2", password="pw-2")
        gw.wait(lambda: any(s and s["online"] for s in statuses(gw)), timeout_s=20, what="controller online")
        for client_id in ("ctl-ctl1", "controller", "ctl-ctl1", "controller", "ctl-ctl1"):
            assert intruder(broker, client_id, "gw-1", "pw-1") == 0   # it may connect ... as itself
        time.sleep(1.5)   # a kicked controller's Will would be out by now; its reconnect later
        seen = statuses(gw)
        assert seen and all(s is not None and s["online"] for s in seen), seen
        assert ctl.poll() is None
        text = log.read_text()
        assert "connection lost" not in text and text.count("connected to") == 1, text
        gw.close()
    finally:
        ctl.terminate()
        ctl.wait(10)


def test_gateway_credential_cannot_take_another_gateways_client_id(mosquitto):
    broker = mosquitto(users=USERS, acl=(DEPLOY / "colorgrid.acl").read_text(), deploy_conf=lab_conf())
    controller = Observer(broker, subscribe=("colorgrid/v1/gw/#",), username="controller", password="ctl-secret")
    victim_events = []
    victim = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="colorgrid-gw-gw-1", clean_session=False,
                         protocol=mqtt.MQTTv311)
    victim.username_pw_set("gw-1", "pw-1")
    victim.will_set(topics.death("gw-1"), codec.encode_death("gw-1", 0, 0, "lost"), qos=1, retain=True)
    victim.on_connect = lambda c, u, f, rc, p: victim_events.append(("connect", rc.value))
    victim.on_disconnect = lambda c, u, f, rc, p: victim_events.append(("disconnect", rc.value))
    victim.reconnect_delay_set(60, 60)    # a kicked victim would stay down for the test's length
    victim.connect(broker.host, broker.port, keepalive=10)
    victim.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not victim_events and time.monotonic() < deadline:
            time.sleep(0.02)
        assert victim_events == [("connect", 0)]
        for client_id in ("colorgrid-gw-gw-1", "gw-1", "colorgrid-gw-gw-1"):
            assert intruder(broker, client_id, "gw-2", "pw-2") == 0
        victim.publish(topics.state("gw-1"), b"still here", qos=1).wait_for_publish(5)
        controller.wait_topic(topics.state("gw-1"))
        assert victim_events == [("connect", 0)], victim_events         # never kicked off
        assert controller.on(topics.death("gw-1")) == []                # so no Will either
    finally:
        victim.disconnect()
        victim.loop_stop()
        controller.close()


def test_without_acls_the_controller_reasserts_a_forged_retained_status(tmp_path):
    broker = MosquittoBroker().start()                    # anonymous, no ACL: anyone may write
    (tmp_path / "key.hex").write_text(KEY.hex())
    ctl = controller_proc(broker.port, SimClock(1.0), tmp_path / "key.hex", None, 1.0, 0.5,
                          tmp_path / "controller.log")
    broker.host = "127.0.0.1"
    try:
        watcher = Observer(broker, subscribe=(STATUS,))
        watcher.wait(lambda: any(s and s["online"] for s in statuses(watcher)), timeout_s=20,
                     what="controller online")
        session = [s for s in statuses(watcher) if s][-1]["session_ms"]
        forged = security.make_status("ctl1", False, int(time.time() * 1000), session + 1, "k1", b"x" * 32)
        forger = Observer(broker, subscribe=())
        for payload in (forged, b"garbage", forged):
            n = len(watcher.on(STATUS))
            forger.publish(STATUS, payload, retain=True)
            watcher.wait(lambda: len(watcher.on(STATUS)) >= n + 2, timeout_s=10, what="re-assert")
        late = Observer(broker, subscribe=(STATUS,))       # a gateway connecting afterwards
        retained = late.wait_topic(STATUS)[0]
        msg = codec.decode(STATUS, retained.payload)[2]
        assert retained.retain and msg["online"] is True and msg["session_ms"] == session
        assert security.verify(msg, {"k1": KEY}) == ""
        for client in (watcher, forger, late):
            client.close()
    finally:
        ctl.terminate()
        ctl.wait(10)
        broker.stop()
