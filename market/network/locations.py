"""Location ids of the network: bus·phase nodes as `vocab.location` ids, branches by element.

A node `(bus, node)` is the location id `"671.1"` (`vocab.location.location_id`); a whole bus
`"671"` stands for the bus's phase nodes 1–3 that exist (neutrals, node ≥ 4, are left out). A
branch row — the conductor on terminal 1 of a line or transformer connected to node k — is named
in OpenDSS's own `Class.name` notation plus the node: `"line.650632.1"`, `"transformer.sub.2"`
(the element alone, `"line.650632"`, names all its rows). Branch ids are not vocab locations
(they name an element, not a place); `parse_branch_id` splits them.

Every API that took a `(bus, node)` tuple takes either form: `as_key("671.1") == ("671", 1)`.
"""
from __future__ import annotations

from vocab.location import LocationError, location_id, parse_location

from market.network.errors import NetworkError

Key = tuple[str, int]
PHASE_NODES = (1, 2, 3)  # the nodes a whole-bus location covers and voltage limits are checked on


class UnknownLocationError(NetworkError, KeyError):
    """A location id or (bus, node) that the network does not hold (a KeyError as before)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def node_location(key: Key) -> str:
    """`("671", 1)` → `"671.1"`."""
    return location_id(key[0], key[1])


def branch_id(element: str, node: int | None = None) -> str:
    """`("line.650632", 1)` → `"line.650632.1"`; without a node, the element's id."""
    kind, dot, name = element.lower().partition(".")
    if not dot or not kind or not name or "." in name:
        raise LocationError(f"branch: expected 'class.name', got {element!r}")
    return element.lower() if node is None else f"{element.lower()}.{int(node)}"


def parse_branch_id(text: str) -> tuple[str, int | None]:
    """`"line.650632.1"` → `("line.650632", 1)`; `"line.650632"` → `("line.650632", None)`."""
    parts = str(text).strip().lower().split(".")
    if len(parts) == 2 and all(parts):
        return ".".join(parts), None
    if len(parts) == 3 and all(parts) and parts[2].isdigit():
        return f"{parts[0]}.{parts[1]}", int(parts[2])
    raise LocationError(f"branch: expected 'class.name' or 'class.name.node', got {text!r}")


class LocationIndex:
    """Node positions by location id (case-insensitive) and by (bus, node) tuple (exact)."""

    def __init__(self, nodes: list[Key]):
        self.keys = list(nodes)
        self.ids = [node_location(k) for k in self.keys]
        self._by_key = {k: i for i, k in enumerate(self.keys)}
        self._by_id = {loc: i for i, loc in enumerate(self.ids)}
        if len(self._by_id) != len(self.ids):
            raise LocationError("two nodes share a location id (bus names differing only in case)")
        self._by_bus: dict[str, list[int]] = {}
        for i, (bus, node) in enumerate(self.keys):
            if node in PHASE_NODES:
                self._by_bus.setdefault(parse_location(self.ids[i])[0], []).append(i)

    def index_of(self, where: str | Key) -> int:
        """Position of one node: a bus·phase id `"671.1"` or a `("671", 1)` tuple."""
        if isinstance(where, tuple):
            try:
                return self._by_key[where]
            except KeyError:
                raise UnknownLocationError(f"no node {where!r} in the network") from None
        bus, node = parse_location(where)
        if node is None:
            raise LocationError(f"{where!r} is a whole bus; index_of needs a bus·phase such as '{bus}.1' "
                                "(indices_of gives all of a bus's phase nodes)")
        try:
            return self._by_id[location_id(bus, node)]
        except KeyError:
            raise UnknownLocationError(f"no node {where!r} in the network") from None

    def indices_of(self, where: str | Key) -> list[int]:
        """Positions of a location: one node, or every phase node (1–3) of a whole bus `"671"`."""
        if isinstance(where, tuple):
            return [self.index_of(where)]
        bus, node = parse_location(where)
        if node is not None:
            return [self.index_of(where)]
        if bus not in self._by_bus:
            raise UnknownLocationError(f"no bus {where!r} with phase nodes in the network")
        return list(self._by_bus[bus])

    def key_of(self, where: str | Key) -> Key:
        return self.keys[self.index_of(where)]


def as_branch_key(where: str | Key) -> Key:
    """A branch row as `(element, node)`: from `"line.650632.1"` or the tuple itself."""
    if isinstance(where, tuple):
        return where
    element, node = parse_branch_id(where)
    if node is None:
        raise LocationError(f"{where!r} names a whole element; give the phase, e.g. '{where}.1'")
    return element, node
