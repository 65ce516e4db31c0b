"""Broker URLs: the one parser, for the agent (CPython and MicroPython), the cloud and the simulators.

    parse_broker_url("mqtts://broker.lan")  ->  BrokerUrl(host="broker.lan", port=8883, tls=True)
    host, port, tls = parse_broker_url("mqtt://127.0.0.1:1884", "--broker")

Grammar: ``scheme "://" host [":" port] ["/"]``

| part   | rule                                                                       |
|--------|----------------------------------------------------------------------------|
| scheme | ``mqtt`` (plain, default port 1883) or ``mqtts`` (TLS, default port 8883)  |
| host   | a name or IPv4 address (A-Z a-z 0-9 . - _), or an IPv6 address in ``[ ]``  |
| port   | decimal digits, 1..65535                                                   |

Nothing else: credentials belong in their own config fields (username, password_file), never in
the URL; a path, query or fragment is refused. Every error raises ``UrlError`` (a ValueError) whose
message starts with the field it was given (``broker.url: bad port 'x' in 'mqtt://h:x'``).
MicroPython-compatible: no urllib, parsed by hand.
"""

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"
_IPV6_CHARS = "0123456789abcdefABCDEF:."


class UrlError(ValueError):
    """A broker URL that does not follow the grammar; the message names the field."""


class BrokerUrl:
    """(host, port, tls) of a broker; unpacks and compares like that tuple."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host = host
        self.port = port
        self.tls = tls

    def astuple(self) -> tuple:
        return (self.host, self.port, self.tls)

    def __iter__(self):
        return iter(self.astuple())

    def __eq__(self, other) -> bool:
        if isinstance(other, BrokerUrl):
            other = other.astuple()
        return isinstance(other, tuple) and self.astuple() == other

    def __repr__(self) -> str:
        return "BrokerUrl(host=%r, port=%d, tls=%r)" % (self.host, self.port, self.tls)


def _fail(field: str, why: str, url) -> UrlError:
    return UrlError("%s: %s in %r" % (field, why, url))


def _split_host_port(rest: str, field: str, url: str) -> tuple:
    """'host[:port]' or '[v6][:port]' -> (host, port_text or None)."""
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _fail(field, "unclosed [ of an IPv6 address", url)
        host, after = rest[1:close], rest[close + 1:]
        if host == "" or any(c not in _IPV6_CHARS for c in host):
            raise _fail(field, "bad IPv6 address %r" % host, url)
        if after and not after.startswith(":"):
            raise _fail(field, "unexpected %r after the address" % after, url)
        return host, (after[1:] if after else None)
    host, colon, port_text = rest.partition(":")
    if host == "":
        raise _fail(field, "missing host", url)
    if any(c not in _HOST_CHARS for c in host):
        raise _fail(field, "bad host %r (A-Z a-z 0-9 . - _, or [IPv6])" % host, url)
    return host, (port_text if colon else None)


def _port(port_text, default: int, field: str, url: str) -> int:
    if port_text is None:
        return default
    if port_text == "" or any(c not in "0123456789" for c in port_text):
        raise _fail(field, "bad port %r" % port_text, url)
    port = int(port_text)
    if not 0 < port < 65536:
        raise _fail(field, "port %d out of range 1..65535" % port, url)
    return port


def parse_broker_url(url, field: str = "broker.url", tls_allowed: bool = True) -> BrokerUrl:
    """Parse ``url`` (grammar above); ``field`` names it in errors; ``tls_allowed=False`` refuses
    ``mqtts://`` for a client that has no TLS set-up."""
    schemes = "mqtt://host[:port] or mqtts://host[:port]" if tls_allowed else "mqtt://host[:port]"
    if not isinstance(url, str):
        raise UrlError("%s: expected %s, got %r" % (field, schemes, url))
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in DEFAULT_PORTS or (scheme == "mqtts" and not tls_allowed):
        raise UrlError("%s: expected %s, got %r" % (field, schemes, url))
    if rest.endswith("/"):
        rest = rest[:-1]
    if "@" in rest:
        raise _fail(field, "credentials in the URL (give username / password apart)", url)
    for c in "/?#":
        if c in rest:
            raise _fail(field, "path, query or fragment (%r)" % c, url)
    host, port_text = _split_host_port(rest, field, url)
    return BrokerUrl(host, _port(port_text, DEFAULT_PORTS[scheme], field, url), scheme == "mqtts")
