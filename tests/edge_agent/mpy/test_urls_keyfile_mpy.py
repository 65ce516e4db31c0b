"""Broker URLs and key tables under both runtimes (the core has no urllib on MicroPython).

``node tools/mpy_wasm/run.mjs tests/edge_agent/mpy/test_urls_keyfile_mpy.py`` runs it under
MicroPython (tests/edge_agent/test_micropython.py does, for every script here); pytest collects
the test function on CPython. Same results and the same error messages on both.
"""
from edge_agent import keyfile, urls


def error_of(fn, *args):
    try:
        fn(*args)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("accepted: %r" % (args,))


def check_urls():
    assert tuple(urls.parse_broker_url("mqtts://broker.lan")) == ("broker.lan", 8883, True)
    host, port, tls = urls.parse_broker_url("mqtt://[::1]:1885/", "--broker")
    assert (host, port, tls) == ("::1", 1885, False)
    assert urls.parse_broker_url("mqtt://h") == ("h", 1883, False)
    got = error_of(urls.parse_broker_url, "mqtt://h:x", "broker.url")
    assert got == "broker.url: bad port 'x' in 'mqtt://h:x'", got
    got = error_of(urls.parse_broker_url, "http://h", "broker.url")
    assert got == "broker.url: expected mqtt://host[:port] or mqtts://host[:port], got 'http://h'", got


def check_keys():
    hex_key = "00" * 16
    assert keyfile.parse_keys(hex_key + "\n", "k1", "--f") == {"k1": b"\x00" * 16}
    table = keyfile.parse_keys('{"b": "%s", "a": "%s"}' % (hex_key, "11" * 16), "k1", "--f")
    assert sorted(table) == ["a", "b"] and table["a"] == b"\x11" * 16
    assert keyfile.parse_key_table({"k1": hex_key}, "security.keys") == {"k1": b"\x00" * 16}
    got = error_of(keyfile.parse_keys, "abcd", "k1", "--f")
    assert got == "--f: key 'k1': shorter than 16 bytes", got
    got = error_of(keyfile.parse_key_table, {"k1": "zz"}, "security.keys")
    assert got == "security.keys: key 'k1': not hex", got
    got = error_of(keyfile.parse_keys, "{nope", "k1", "--f")
    assert got == "--f: not hex, and not a JSON table {key_id: hex}", got


def test_urls_and_keys_under_cpython():
    check_urls()
    check_keys()


if __name__ == "__main__":
    test_urls_and_keys_under_cpython()
    print("done")
