"""The topic tree: builders, parser, and identifier rules."""
import pytest

from edge_agent import topics


def test_builders_and_parse_agree():
    assert topics.birth("gw-1") == "colorgrid/v1/gw/gw-1/birth"
    assert topics.vector("bus7.a") == "colorgrid/v1/ctl/vector/bus7.a"
    assert topics.cmd("gw-1") == "colorgrid/v1/ctl/gw/gw-1/cmd"
    assert topics.parse(topics.state("gw-1")) == ("gw", "gw-1", "state")
    assert topics.parse(topics.vector("g").encode()) == ("vector", "g", "")
    assert topics.parse(topics.controller_status()) == ("status", "", "")
    assert topics.parse(topics.cmd("x")) == ("cmd", "x", "")


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "x" * 65, "é", None, 3])
def test_identifiers_cannot_break_the_tree(bad):
    with pytest.raises(topics.TopicError, match="gateway_id"):
        topics.birth(bad)


@pytest.mark.parametrize("topic", [
    "colorgrid/v2/gw/a/birth", "colorgrid/v1/gw/a/birth/x", "colorgrid/v1/gw/a/other",
    "colorgrid/v1/ctl/vector/", "colorgrid/v1/ctl/gw/a/resp", b"\xff", "colorgrid/v1/gw/+/state",
])
def test_parse_rejects_foreign_topics(topic):
    with pytest.raises(topics.TopicError):
        topics.parse(topic)


def test_gateway_reads_only_control_topics():
    subs = topics.gateway_subscriptions("gw-1", "g")
    assert all(s.startswith(topics.CTL_PREFIX) for s in subs)
    assert topics.cmd("gw-1") in subs and topics.vector("g") in subs
