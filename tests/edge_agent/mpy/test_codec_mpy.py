"""Codec, topics and security under both runtimes.

Run as a script (``node tools/mpy_wasm/run.mjs tests/edge_agent/mpy/test_codec_mpy.py`` or
``python tests/edge_agent/mpy/test_codec_mpy.py``) it asserts the checks below and prints one
line per wire artefact; tests/edge_agent/test_codec_under_micropython.py runs it under both and
requires identical output (same bytes on the wire, same signatures, same error messages).
"""
from edge_agent import codec, security, topics

KEY = b"0123456789abcdef0123456789abcdef"


def out(name, value):
    print(name, value)


def check_hmac():
    # RFC 4231 test cases 1, 2 and 6 (key longer than a block)
    mac = security.hexlify(security.hmac_sha256(b"\x0b" * 20, b"Hi There"))
    assert mac == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", mac
    mac = security.hexlify(security.hmac_sha256(b"Jefe", b"what do ya want for nothing?"))
    assert mac == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", mac
    mac = security.hexlify(security.hmac_sha256(
        b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"))
    assert mac == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", mac
    for n in (0, 1, 63, 64, 65, 200):
        out("hmac%d" % n, security.hexlify(security.hmac_sha256(bytes(range(n)), b"m" * n)))


def check_messages():
    out("dumps", codec.dumps({"b": [1, 0.1, None, True, 1e-06, 1 / 3], "a": "x\"\\\n\x01é"}))
    v = security.make_vector("g1", 7, [1 / 3, 0.5, 0.0], [0.123456789, 0.0, 1], 1000, 4000,
                             "k1", KEY)
    out("vector", v)
    kind, name, msg = codec.decode(topics.vector("g1"), v)
    assert kind == "vector" and name == "g1" and msg["p_on"][0] == 0.333333
    guard = security.VectorGuard({"k1": KEY}, "g1")
    out("accept", repr(guard.check(msg, 2000)))
    out("replay", guard.check(msg, 2000))
    out("expired", security.VectorGuard({"k1": KEY}, "g1").check(msg, 9000))
    forged = dict(msg)
    forged["p_off"] = [0.9, 0.0, 1.0]
    out("forged", security.VectorGuard({"k1": KEY}, "g1").check(forged, 2000))
    out("birth", codec.encode_birth("gw-1", "g1", 3, 5, ["green", "yellow", "black"],
                                    [{"device_id": "d1", "tier_w": [1, 2, 3]}],
                                    {"round_ms": 2000, "flag": True, "name": "pi"}))
    out("state", codec.encode_state("gw-1", "g1", 3, 255, 7, 9, [[1, 2, 3, 4], [0, 0, 0, 0]],
                                    [[1, 1, 1, 1], [0, 0, 0, 0]], -1, True, 2))
    out("death", codec.encode_death("gw-1", 3, 5))
    out("status", security.make_status("ctl", True, 5, 1, "k1", KEY))
    out("cmd", security.make_cmd("t-1", "config_set", 5, 1000, "k1", KEY,
                                 {"fail_safe_ms": 30000}))
    out("resp", codec.encode_resp("gw-1", 3, 4, 5, "t-1", False, "unknown parameter x", {}))
    # reports signed with the gateway's own key (issue 16.4): same bytes, same verdicts
    signed = security.sign_report(codec.encode_state("gw-1", "g1", 3, 4, 7, 9, [[1, 2, 3, 4], [0, 0, 0, 0]],
                                                     [[1, 1, 1, 1], [0, 0, 0, 0]], 12, False, 0, 2,
                                                     "replay (round_id 3 <= last accepted 4)"),
                                  "gw-1", KEY)
    out("signed_state", signed)
    msg = codec.decode(topics.state("gw-1"), signed)[2]
    out("signed_state_ok", repr(security.verify(msg, {"gw-1": KEY})))
    out("signed_state_other_key", security.verify(msg, {"gw-1": b"x" * 32}))
    birth = security.sign_report(codec.encode_birth("gw-1", "g1", 3, 5, ["green", "black"],
                                                    [{"device_id": "d1", "tier_w": [1, 2]}],
                                                    {"round_ms": 2000, "gain": 0.1 + 0.2}), "gw-1", KEY)
    out("signed_birth", birth)
    out("signed_birth_ok", repr(security.verify(codec.decode_birth(birth), {"gw-1": KEY})))
    out("signed_death", security.sign_report(codec.encode_death("gw-1", 3, 5), "gw-1", KEY))


BAD = [
    ("vector", b'{"v":1}'),
    ("vector", b"\xff"),
    ("vector", b"[1]"),
    ("vector", b'{"v":1,"group":"g1","round_id":1,"p_on":[2],"p_off":[0],"issued_ts_ms":1,'
               b'"expires_ts_ms":2,"key_id":"k","sig":"' + b"0" * 64 + b'"}'),
    ("state", b'{"v":1,"gateway_id":"gw-1","group":"g","bd_seq":0,"seq":300}'),
    ("status", b'{"v":1,"controller_id":"c","online":1,"ts_ms":0}'),
    ("cmd", b'{"v":1,"txn":"t","cmd":"reboot","ts_ms":0,"expires_ts_ms":1,"key_id":"k",'
            b'"sig":"x"}'),
]


def check_errors():
    for kind, payload in BAD:
        try:
            getattr(codec, "decode_" + kind)(payload)
        except codec.CodecError as exc:
            out("error", str(exc))
        else:
            raise AssertionError("accepted " + repr(payload))
    try:
        codec.decode_vector(b"[" * 5000)
    except codec.CodecError as exc:
        out("deep", exc.field)


def check_topics():
    out("topic", topics.parse(b"colorgrid/v1/ctl/gw/gw-1/cmd"))
    try:
        topics.parse("colorgrid/v1/gw/a/b/c")
    except topics.TopicError as exc:
        out("topic-error", str(exc))


def test_all_checks_pass_under_cpython():
    check_hmac()
    check_messages()
    check_errors()
    check_topics()


if __name__ == "__main__":
    test_all_checks_pass_under_cpython()
    print("done")
