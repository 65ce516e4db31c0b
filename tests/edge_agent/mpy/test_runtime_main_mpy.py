"""The MicroPython board entry (edge_agent/main.py) builds a working agent from a config.json
dict; run under MicroPython by tests/edge_agent/test_micropython.py and under CPython by pytest."""
import json

from edge_agent import codec, security, topics
from edge_agent import main as board
from edge_agent.transport import FakeBroker, FakeTransport

KEY_HEX = "00112233445566778899aabbccddeeff"
CONFIG = {
    "gateway": {"id": "gw-7", "group": "bus1.a", "seed": 7},
    "broker": {"host": "127.0.0.1", "port": 1883, "username": "gw-7", "password": "pw"},
    "security": {"keys": {"k1": KEY_HEX}},
    "agent": {"store_capacity": 8},
    "params": {"k": 3, "round_s": 2, "fail_safe_s": 60},
    "devices": [{"id": "heater", "rated_w": 2000, "tier_shares": [0.5, 0.5, 0.0]},
                {"id": "fridge", "rated_w": 150, "tier_shares": [0.0, 0.0, 1.0]}],
}


def test_board_entry_builds_a_working_agent():
    broker = FakeBroker()
    made = []

    def factory(host, port, client_id, user=None, password=None, keepalive_s=10):
        made.append((host, port, client_id, user, password, keepalive_s))
        return FakeTransport(broker, client_id)

    agent = board.build_agent(json.loads(json.dumps(CONFIG)), factory)
    assert made == [("127.0.0.1", 1883, "colorgrid-gw-gw-7", "gw-7", "pw", 10)]
    offset = board.epoch_offset_ms()
    assert offset in (0, board.EPOCH_2000_S * 1000)
    now = board.utc_ms(offset)
    assert now > 1600000000000  # UTC epoch ms, not seconds, not a 2000-based epoch
    agent.tick(now)
    birth = codec.decode_birth(broker.retained[topics.birth("gw-7")][0])
    assert birth["devices"][0]["tier_w"] == [0, 0, 150] and birth["devices"][1]["tier_w"] == [1000, 1000, 0]
    key = bytes(bytearray(range(0, 256, 17)))  # 00 11 22 ... ff
    broker.route("ctl", topics.vector("bus1.a"),
                 security.make_vector("bus1.a", 1, [0, 0, 0], [1, 0, 0], now, 5000, "k1", key), 1, False)
    agent.tick(now + 2000)
    assert agent.metrics["vectors_applied"] == 1
    assert agent.core.aggregate().w[0] == [0, 0, 0, 1000]


def test_board_report_key_signs_every_report():
    """config.json "security": {"report_key": {key_id: hex}}: the board signs its own messages
    (issue 16.4) — under MicroPython too."""
    broker = FakeBroker()
    cfg = json.loads(json.dumps(CONFIG))
    cfg["security"]["report_key"] = {"gw-7": "ffeeddccbbaa99887766554433221100"}
    agent = board.build_agent(cfg, lambda host, port, cid, user=None, password=None, keepalive_s=10:
                              FakeTransport(broker, cid))
    now = 1700000000000
    agent.tick(now)
    agent.tick(now + 2000)
    own = bytes(bytearray(range(255, -1, -17)))  # ff ee dd ... 00
    sent = [(t, p) for (_c, t, p, _q, _r) in broker.log if t.startswith("colorgrid/v1/gw/")]
    assert len(sent) >= 3
    for topic, payload in sent:
        msg = codec.decode(topic, payload)[2]
        assert security.verify(msg, {"gw-7": own}) == "", topic


if __name__ == "__main__":
    test_board_entry_builds_a_working_agent()
    test_board_report_key_signs_every_report()
    print("done")
