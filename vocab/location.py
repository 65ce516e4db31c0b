"""Location ids: one name for a place on the feeder, used by every package.

A location is a bus·phase in OpenDSS's own node notation, ``"671.1"`` (bus 671, node 1), or a
whole (usually three-phase) bus, ``"671"``. Bus names are compared case-insensitively by OpenDSS
and are stored lower-case here; a location id is therefore lower-case. The same string names a
control group of the cloud controller, a node of the power flow, a price in the market and a P2P
order's place, so results of one layer can be joined to another's without a mapping table.

    location_id("671", 1)      -> "671.1"
    location_id("671")         -> "671"
    parse_location("671.1")    -> ("671", 1)
    parse_location("671")      -> ("671", None)
    bus_of("671.2")            -> "671"

OpenDSS bus names hold no dots (a dot separates the node), so the part after the one dot is
always the node number.
"""
from __future__ import annotations

MAX_NODE = 99          # OpenDSS nodes are small integers (1..3 phases, 4 neutral, more for rare cases)
MAX_LEN = 64           # matches the wire codec's identifier limit
_BUS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class LocationError(ValueError):
    """A string or (bus, node) that is not a location (the message says why)."""


def _check_bus(bus: object) -> str:
    if not isinstance(bus, str) or not bus:
        raise LocationError(f"bus: expected a non-empty string, got {bus!r}")
    name = bus.strip().lower()
    if not name or any(c not in _BUS_CHARS for c in name):
        raise LocationError(f"bus: {bus!r} has characters other than a-z 0-9 _ -")
    return name


def _check_node(node: object) -> int:
    if isinstance(node, bool) or not isinstance(node, int) or not 1 <= node <= MAX_NODE:
        raise LocationError(f"node: expected an integer 1..{MAX_NODE}, got {node!r}")
    return node


def location_id(bus: str, node: int | None = None) -> str:
    """The location id of `bus`·`node` (`"671.1"`), or of the whole bus when node is None."""
    name = _check_bus(bus)
    text = name if node is None else f"{name}.{_check_node(node)}"
    if len(text) > MAX_LEN:
        raise LocationError(f"location: {text!r} is longer than {MAX_LEN} characters")
    return text


def parse_location(text: object) -> tuple[str, int | None]:
    """(bus, node) of a location id; node is None for a whole bus. LocationError if malformed."""
    if not isinstance(text, str) or not text or len(text) > MAX_LEN:
        raise LocationError(f"location: expected 1..{MAX_LEN} characters, got {text!r}")
    bus, dot, node = text.strip().lower().rpartition(".")
    if not dot:
        return _check_bus(node), None
    if not node.isdigit():
        raise LocationError(f"location: {text!r}: node {node!r} is not an integer")
    return _check_bus(bus), _check_node(int(node))


def normalize(text: str) -> str:
    """The canonical spelling of a location id (lower-case, no spaces, no leading zeros)."""
    return location_id(*parse_location(text))


def bus_of(text: str) -> str:
    """The bus of a location id (the id itself for a whole bus)."""
    return parse_location(text)[0]


def is_location(text: object) -> bool:
    """True when `text` parses as a location id."""
    try:
        parse_location(text)
    except LocationError:
        return False
    return True


def covers(outer: str, inner: str) -> bool:
    """True when location `inner` lies within `outer`: the same id, or a node of bus `outer`."""
    ob, on = parse_location(outer)
    ib, inn = parse_location(inner)
    return ob == ib and (on is None or on == inn)
