"""Wire codec: round trips, canonical form, and strict rejection naming the field."""
import json

import pytest

from edge_agent import codec, security, topics

KEY = b"0123456789abcdef0123456789abcdef"


def _birth(**over):
    args = dict(gateway_id="gw-1", group="feeder1.a", bd_seq=3, ts_ms=1_700_000_000_000,
                tiers=["green", "yellow", "black"],
                devices=[{"device_id": "d1", "tier_w": [1000, 500, 200]},
                         {"device_id": "d2", "tier_w": [0, 0, 3000]}],
                params={"round_ms": 2000, "fail_safe_ms": 60000, "t_ef_s": 120.0})
    args.update(over)
    return codec.encode_birth(**args)


def _state(**over):
    args = dict(gateway_id="gw-1", group="g", bd_seq=1, seq=7, ts_ms=5000, round_index=3,
                p_w=[[1, 2, 3, 4], [0, 0, 0, 0], [10, 0, 0, 0]],
                count=[[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]],
                vector_round_id=-1, fail_safe=False, store_depth=0)
    args.update(over)
    return codec.encode_state(**args)


def test_canonical_json_sorted_compact_and_equal_to_cpython():
    obj = {"b": [1, 2.5, None, True], "a": {"z": "x\"y\\\n\x01\t", "c": False}}
    assert codec.dumps(obj) == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_birth_round_trip_through_topic_dispatch():
    kind, name, msg = codec.decode(topics.birth("gw-1"), _birth())
    assert (kind, name) == ("birth", "gw-1")
    assert msg["devices"][1] == {"device_id": "d2", "tier_w": [0, 0, 3000]}
    assert msg["seq"] == 0 and msg["bd_seq"] == 3 and msg["params"]["round_ms"] == 2000


def test_state_round_trip_and_topic_mismatch():
    kind, name, msg = codec.decode(topics.state("gw-1"), _state())
    assert msg["p_w"][0] == [1, 2, 3, 4] and msg["seq"] == 7
    with pytest.raises(codec.CodecError, match="^gateway_id: does not match topic"):
        codec.decode(topics.state("gw-2"), _state())


def test_death_will_has_no_seq_and_shutdown_has_one():
    will = codec.decode_death(codec.encode_death("gw-1", 4, 10))
    assert "seq" not in will and will["reason"] == "lost"
    bye = codec.decode_death(codec.encode_death("gw-1", 4, 10, "shutdown", seq=9))
    assert bye["seq"] == 9


def test_status_cmd_resp_round_trip():
    st = codec.decode(topics.controller_status(), security.make_status("ctl-1", False, 1, 1, "k1", KEY))[2]
    assert st["online"] is False
    raw = security.make_cmd("t1", "config_set", 100, 1000, "k1", KEY, {"fail_safe_ms": 30000})
    kind, name, cmd = codec.decode(topics.cmd("gw-1"), raw)
    assert kind == "cmd" and name == "gw-1" and cmd["params"] == {"fail_safe_ms": 30000}
    resp = codec.decode_resp(codec.encode_resp("gw-1", 1, 2, 3, "t1", True, "", {"a": 1}))
    assert resp["txn"] == "t1"


@pytest.mark.parametrize("payload, field", [
    (b"\xff\xfe", "payload: not UTF-8"),
    (b"[1,2]", "payload: not a JSON object"),
    (b"{", "payload: not JSON"),
    (b"[" * 100000, "payload: not JSON"),
    (b"{}", "v: missing"),
    (b" " * (codec.MAX_PAYLOAD_BYTES + 1), "payload: too large"),
])
def test_garbage_payloads_are_named(payload, field):
    with pytest.raises(codec.CodecError) as err:
        codec.decode_vector(payload)
    assert str(err.value).startswith(field)


def _vector_dict(**over):
    d = json.loads(security.make_vector("g", 1, [0.5, 0.25, 0.0], [0.1, 0.2, 0.0], 10, 100,
                                        "k1", KEY))
    d.update(over)
    return json.dumps(d).encode()


@pytest.mark.parametrize("over, message", [
    ({"p_on": [0.5, 1.5, 0.0]}, "p_on[1]: out of range [0, 1]"),
    ({"p_on": [0.5, True, 0.0]}, "p_on[1]: not a number"),
    ({"p_off": [0.1, 0.2]}, "p_off: length 2 not in [3, 3]"),
    ({"round_id": -1}, "round_id: out of range"),
    ({"round_id": 1.0}, "round_id: not an integer"),
    ({"expires_ts_ms": 10}, "expires_ts_ms: not after issued_ts_ms"),
    ({"group": "a/b"}, "group: not an identifier"),
    ({"sig": "XYZ"}, "sig: not 64 hex characters"),
    ({"extra": 1}, "extra: unknown field"),
    ({"v": 2}, "v: out of range [1, 1]"),
])
def test_vector_field_errors(over, message):
    with pytest.raises(codec.CodecError) as err:
        codec.decode_vector(_vector_dict(**over))
    assert str(err.value).startswith(message)


def test_nan_and_infinity_rejected():
    raw = _vector_dict().replace(b"0.25", b"NaN")
    with pytest.raises(codec.CodecError, match=r"^p_on\[1\]: not finite"):
        codec.decode_vector(raw)
    with pytest.raises(codec.CodecError, match="non-finite"):
        codec.dumps({"x": float("inf")})


def test_state_matrix_errors_name_the_cell():
    d = json.loads(_state())
    d["p_w"][2][3] = -5
    with pytest.raises(codec.CodecError, match=r"^p_w\[2\]\[3\]: out of range"):
        codec.decode_state(json.dumps(d))
    d = json.loads(_state())
    d["count"] = d["count"][:2]
    with pytest.raises(codec.CodecError, match=r"^count: length 2 not in \[3, 3\]"):
        codec.decode_state(json.dumps(d))


def test_encoders_refuse_invalid_messages():
    with pytest.raises(codec.CodecError, match="^seq: out of range"):
        _state(seq=256)
    with pytest.raises(codec.CodecError, match=r"^devices\[0\]\.tier_w: length 2"):
        _birth(devices=[{"device_id": "d", "tier_w": [1, 2]}])


def test_cmd_params_only_with_config_set():
    d = json.loads(security.make_cmd("t1", "rebirth", 1, 10, "k1", KEY))
    d["params"] = {}
    with pytest.raises(codec.CodecError, match="^params: only allowed with config_set"):
        codec.decode_cmd(json.dumps(d))


def test_quantised_probabilities():
    assert codec.quantize_prob(1 / 3) == 0.333333
    assert codec.quantize_prob(1) == 1.0
