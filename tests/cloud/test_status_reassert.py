"""The retained controller status must hold the running controller's own `online: true`.

Without broker ACLs any client can overwrite the retained `colorgrid/v1/ctl/status` (a forged
status, or a replay of this controller's own signed Will captured earlier). The controller hears
the status topic and re-asserts its genuine online status when it sees anything else (issue 16
item 5); at most once per round, the rest folded into the next round, so two controllers
misconfigured onto one broker cannot ping-pong at wire speed."""
from cloud.goals import ConstantGoal
from cloud.rounds import ControllerCore
from edge_agent import codec, security, topics

KEY = b"k" * 32
STATUS = topics.controller_status()


def core():
    return ControllerCore("ctl1", ConstantGoal(3.0), "k1", KEY)


def decode(payload):
    return codec.decode(STATUS, payload)[2]


def test_own_echo_is_ignored_and_a_forged_status_is_overwritten():
    c = core()
    will = c.status_payload(False, 1_000)           # registered at connect
    online = c.status_payload(True, 1_000)          # published after connect
    assert c.handle(STATUS, online, 1_010, retained=False) == []       # our own echo
    forged = security.make_status("ctl1", False, 1_500, 1_000, "k1", b"x" * 32)
    out = c.handle(STATUS, forged, 1_600)
    assert len(out) == 1
    topic, payload, qos, retain = out[0]
    assert (topic, qos, retain) == (STATUS, 1, True)
    msg = decode(payload)
    assert msg["online"] is True and msg["session_ms"] == 1_000 and msg["ts_ms"] == 1_600
    assert security.verify(msg, {"k1": KEY}) == ""
    assert c.status_reasserted == 1
    # the re-asserted payload is now "ours": its echo changes nothing
    assert c.handle(STATUS, payload, 1_610) == []
    # a replay of our own signed Will (current session) is foreign too: gateways would obey it
    out = c.handle(STATUS, will, 5_000)
    assert len(out) == 1 and decode(out[0][1])["online"] is True


def test_not_garbage_either_and_never_raises():
    c = core()
    c.status_payload(True, 0)
    for n, junk in enumerate((b"", b"not json", b"{}", b"\xff" * 10)):   # b"": the retained slot cleared
        out = c.handle(STATUS, junk, 10_000 + n * 5_000)
        assert [decode(p)["online"] for _, p, _, _ in out] == [True]


def test_at_most_one_reassert_per_round_the_rest_in_the_next_round():
    c = core()
    c.status_payload(True, 0)
    forged = b'{"forged":1}'
    first = c.handle(STATUS, forged, 10_000)
    assert len(first) == 1
    assert c.handle(STATUS, forged, 10_100) == []          # held off: within the same round
    assert c.handle(STATUS, forged, 10_200) == []
    out = c.control_round(12_000)
    statuses = [p for t, p, _, _ in out if t == STATUS]
    assert len(statuses) == 1 and decode(statuses[0])["online"] is True
    assert [p for t, p, _, _ in c.control_round(14_000) if t == STATUS] == []   # nothing pending
    assert c.status_reasserted == 2


def test_before_the_first_connect_nothing_is_asserted():
    c = core()
    c.status_payload(False, 0)                              # the Will only: not online yet
    assert c.handle(STATUS, b'{"forged":1}', 100) == []
