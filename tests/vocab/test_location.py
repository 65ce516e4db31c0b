"""Location ids: the table of spellings, round trips, and every malformed case named."""
import pytest

from vocab.location import (LocationError, bus_of, covers, is_location, location_id, normalize,
                            parse_location)


@pytest.mark.parametrize("bus,node,text", [
    ("671", 1, "671.1"), ("671", None, "671"), ("SourceBus", 3, "sourcebus.3"),
    ("l3104830", 2, "l3104830.2"), ("rg60", 4, "rg60.4"), ("a_b-c", None, "a_b-c"),
])
def test_round_trip(bus, node, text):
    assert location_id(bus, node) == text
    assert parse_location(text) == (bus.lower(), node)
    assert location_id(*parse_location(text)) == text


@pytest.mark.parametrize("text", ["", "671.", ".1", "671.x", "671.0", "671.100", "67 1.1",
                                  "a" * 65, None, 671, "671.1.2", "bus/1"])
def test_malformed_is_refused(text):
    assert not is_location(text)
    with pytest.raises(LocationError):
        parse_location(text)


@pytest.mark.parametrize("bus,node", [("", 1), ("671", 0), ("671", True), ("671", 1.0), (None, 1)])
def test_bad_parts_are_refused(bus, node):
    with pytest.raises(LocationError):
        location_id(bus, node)


def test_helpers():
    assert normalize(" 671.01 ") == "671.1"
    assert bus_of("671.2") == "671" and bus_of("671") == "671"
    assert covers("671", "671.2") and covers("671.2", "671.2")
    assert not covers("671.1", "671.2") and not covers("671.1", "671") and not covers("67", "671.1")
