"""The one broker-URL parser (edge_agent.urls), as a table; the old entry points keep their shape."""
import pytest

from edge_agent.urls import BrokerUrl, UrlError, parse_broker_url

GOOD = [
    ("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884, False)),
    ("mqtt://host", ("host", 1883, False)),
    ("mqtt://host/", ("host", 1883, False)),
    ("mqtts://broker.lan", ("broker.lan", 8883, True)),
    ("mqtts://broker.lan:8884", ("broker.lan", 8884, True)),
    ("mqtt://my_broker-1.example.org:65535", ("my_broker-1.example.org", 65535, False)),
    ("mqtt://[::1]:1885", ("::1", 1885, False)),
    ("mqtts://[fe80::1]", ("fe80::1", 8883, True)),
]

BAD = [
    ("http://x", "expected mqtt://host[:port] or mqtts://"),
    ("tcp://x", "expected mqtt://"),
    ("mqtt:/x", "expected mqtt://"),
    ("", "expected mqtt://"),
    (None, "expected mqtt://"),
    (1883, "expected mqtt://"),
    ("mqtt://", "missing host"),
    ("mqtt://:1", "missing host"),
    ("mqtt://h:x", "bad port 'x'"),
    ("mqtt://h:", "bad port ''"),
    ("mqtt://h:-1", "bad port '-1'"),
    ("mqtt://h:1:2", "bad port '1:2'"),
    ("mqtt://h:0", "port 0 out of range"),
    ("mqtt://h:70000", "port 70000 out of range"),
    ("mqtt://user:pw@h", "credentials in the URL"),
    ("mqtt://h/topic", "path, query or fragment"),
    ("mqtt://h?x=1", "path, query or fragment"),
    ("mqtt://h#x", "path, query or fragment"),
    ("mqtt://h st", "bad host 'h st'"),
    ("mqtt://[::1", "unclosed ["),
    ("mqtt://[]:1", "bad IPv6 address ''"),
    ("mqtt://[zz::1]", "bad IPv6 address 'zz::1'"),
    ("mqtt://[::1]x", "unexpected 'x' after the address"),
]


@pytest.mark.parametrize("url, expected", GOOD)
def test_good_urls(url, expected):
    got = parse_broker_url(url)
    assert got == expected and tuple(got) == expected
    assert (got.host, got.port, got.tls) == expected
    assert got == BrokerUrl(*expected) and got != BrokerUrl("other", 1, False)


@pytest.mark.parametrize("url, reason", BAD)
def test_bad_urls_name_the_field(url, reason):
    with pytest.raises(UrlError) as err:
        parse_broker_url(url, "--broker")
    message = str(err.value)
    assert message.startswith("--broker: ") and reason in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_tls_refused_where_the_client_has_none():
    assert parse_broker_url("mqtt://h", tls_allowed=False) == ("h", 1883, False)
    with pytest.raises(UrlError, match=r"^broker: expected mqtt://host\[:port\], got 'mqtts://h'"):
        parse_broker_url("mqtts://h", "broker", tls_allowed=False)


def test_default_field_is_the_config_key():
    with pytest.raises(UrlError, match="^broker.url: "):
        parse_broker_url("http://x")


@pytest.mark.parametrize("url, expected", [("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884)),
                                           ("mqtt://host", ("host", 1883))])
def test_old_entry_points_keep_host_port(url, expected):
    from cloud.service import parse_broker_url as cloud_parse
    from firmware_sim.broker import parse_broker_url as sim_parse
    assert cloud_parse(url) == expected and sim_parse(url) == expected


@pytest.mark.parametrize("url", ["tcp://x", "mqtt://:1", "mqtt://h:x", "mqtt://h:70000", "mqtts://h"])
def test_old_entry_points_keep_their_errors(url):
    from cloud.service import ServiceError, parse_broker_url as cloud_parse
    from firmware_sim.broker import BrokerError, parse_broker_url as sim_parse
    with pytest.raises(ServiceError, match="^broker: "):
        cloud_parse(url)
    with pytest.raises(BrokerError, match="^broker: "):
        sim_parse(url)
