"""Transport contract: topic filters, the fake broker, and the umqtt shim's argument order."""
import pytest

from edge_agent.store_forward import StoreForward
from edge_agent.transport import FakeBroker, FakeTransport, TransportError, topic_matches
from edge_agent.transport_umqtt import UmqttTransport


@pytest.mark.parametrize("pattern, topic, ok", [
    ("a/b", "a/b", True), ("a/+", "a/b", True), ("a/+", "a/b/c", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("+/+/c", "a/b/c", True), ("a/b", "a/c", False), ("#", "x/y", True),
    ("a/+/c", "a/b", False),
])
def test_topic_matches(pattern, topic, ok):
    assert topic_matches(pattern, topic) is ok


def test_fake_broker_retained_will_persistent_session_acl():
    acl = lambda client, action, topic: not (action == "write" and topic.startswith("x/"))
    broker = FakeBroker(acl=acl)
    pub, sub = FakeTransport(broker, "pub"), FakeTransport(broker, "sub")
    pub.connect(("w/pub", b"dead", 1, True))
    pub.publish("r/1", b"kept", 1, True)
    pub.publish("x/1", b"denied", 1, False)
    sub.connect()
    sub.subscribe("#", 1)
    assert sub.poll(0) == [("r/1", b"kept")]
    assert broker.denied == [("pub", "write", "x/1")]
    sub.disconnect()
    pub.publish("q/1", b"queued", 1, False)
    pub.publish("q/0", b"qos0 lost", 0, False)
    broker.kill_client("pub")
    sub.connect()
    assert sub.poll(0) == [("q/1", b"queued"), ("w/pub", b"dead")]
    with pytest.raises(TransportError):
        pub.publish("a", b"", 0, False)
    broker.stop()
    with pytest.raises(TransportError):
        sub.connect()


class RecordingUmqttClient:
    """Same signatures as micropython-lib umqtt.simple.MQTTClient (retain before qos)."""
    instances = []

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params={}):
        self.calls = [("init", client_id, server, port, user, password, keepalive)]
        self.cb = None
        self.incoming = []
        RecordingUmqttClient.instances.append(self)

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert isinstance(topic, bytes)
        self.calls.append(("will", topic, msg, retain, qos))

    def connect(self, clean_session=True):
        self.calls.append(("connect", clean_session))

    def publish(self, topic, msg, retain=False, qos=0):
        assert isinstance(topic, bytes)
        self.calls.append(("publish", topic, msg, retain, qos))

    def subscribe(self, topic, qos=0):
        self.calls.append(("subscribe", topic, qos))

    def ping(self):
        self.calls.append(("ping",))

    def check_msg(self):
        if self.incoming:
            item = self.incoming.pop(0)
            if isinstance(item, Exception):
                raise item
            self.cb(*item)


def test_umqtt_shim_passes_retain_and_qos_in_umqtt_order_and_bytes_topics():
    t = UmqttTransport("h", 1883, "gw-1", user="gw-1", password="pw", keepalive_s=10,
                       client_factory=RecordingUmqttClient)
    t.connect(("a/death", b"bye", 1, True))
    t.publish("a/state", b"s", qos=0, retain=True)
    t.publish("a/resp", b"r", qos=1, retain=False)
    t.subscribe("c/cmd", 1)
    c = RecordingUmqttClient.instances[-1]
    assert c.calls[0] == ("init", b"gw-1", "h", 1883, "gw-1", "pw", 10)
    assert c.calls[1:] == [("will", b"a/death", b"bye", True, 1), ("connect", False),
                           ("publish", b"a/state", b"s", True, 0),
                           ("publish", b"a/resp", b"r", False, 1), ("subscribe", b"c/cmd", 1)]
    c.incoming = [(b"c/cmd", b"x"), (b"c/cmd", b"y")]
    assert t.poll(0) == [("c/cmd", b"x"), ("c/cmd", b"y")]
    c.incoming = [OSError(104, "reset")]
    with pytest.raises(TransportError):
        t.poll(0)
    assert not t.is_connected()


def test_umqtt_connect_failure_is_transport_error():
    class Refusing(RecordingUmqttClient):
        def connect(self, clean_session=True):
            raise OSError(111, "refused")
    t = UmqttTransport("h", 1, "gw", client_factory=Refusing)
    with pytest.raises(TransportError):
        t.connect(None)


def test_store_forward_bounded_fifo():
    s = StoreForward(capacity=2)
    for i in range(4):
        s.push(i)
    assert s.depth == 2 and s.dropped == 2 and s.peek() == 2
    assert s.pop() == 2 and s.pop() == 3 and s.depth == 0
    with pytest.raises(ValueError):
        StoreForward(0)
