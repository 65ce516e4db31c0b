"""Registry contract: the SQLite store and the in-memory fake behave the same, and SQLite survives
a close/reopen (a controller restart loses nothing)."""
import pytest

from cloud.registry import FakeRegistry, RegistryError, SqliteRegistry, open_registry


@pytest.fixture(params=["fake", "sqlite"])
def registry(request, tmp_path):
    reg = FakeRegistry() if request.param == "fake" else SqliteRegistry(tmp_path / "reg.db")
    yield reg
    reg.close()


def test_birth_death_session_rules(registry):
    registry.record_birth("gw-2", "g1", 3, {"devices": 10, "k": 3}, 1_000)
    registry.record_birth("gw-1", "g1", 0, {"devices": 5, "k": 3}, 1_100)
    # a death from an older session (bd_seq 2) must not take the newer session offline
    assert registry.record_death("gw-2", 2, 1_200) is False
    assert [g.online for g in registry.gateways()] == [True, True]
    assert registry.record_death("gw-2", 3, 1_300) is True
    gws = registry.gateways()
    assert [g.gateway_id for g in gws] == ["gw-1", "gw-2"]
    assert gws[1].online is False and gws[1].death_ts_ms == 1_300
    assert gws[0].inventory == {"devices": 5, "k": 3}
    # re-birth brings it back with the new counter
    registry.record_birth("gw-2", "g2", 4, {"devices": 10, "k": 3}, 1_400)
    gw2 = registry.gateways()[1]
    assert (gw2.online, gw2.bd_seq, gw2.group, gw2.death_ts_ms) == (True, 4, "g2", None)
    assert registry.record_death("nobody", 0, 1) is False


def test_command_log_and_round_ids(registry):
    assert registry.last_round_id() == 0
    registry.log_command(7, "g1", 100, 2_100, '{"a":1}')
    registry.log_command(7, "g2", 100, 2_100, '{"a":2}')
    registry.log_command(8, "g1", 2_100, 4_100, '{"a":3}')
    assert registry.last_round_id() == 8
    assert [(c.round_id, c.group, c.payload) for c in registry.commands(7)] == [(8, "g1", '{"a":3}')]
    assert len(registry.commands()) == 3


@pytest.mark.parametrize("args,field", [
    (("", "g", 0, {}, 1), "gateway_id"),
    (("gw", "g", 256, {}, 1), "bd_seq"),
    (("gw", "g", -1, {}, 1), "bd_seq"),
    (("gw", "g", 0, {}, -5), "ts_ms"),
])
def test_invalid_birth_names_field(registry, args, field):
    with pytest.raises(RegistryError, match=field):
        registry.record_birth(*args)


def test_invalid_command_names_field(registry):
    with pytest.raises(RegistryError, match="round_id"):
        registry.log_command(0, "g", 1, 2, "{}")
    with pytest.raises(RegistryError, match="expiry_ms"):
        registry.log_command(1, "g", 10, 5, "{}")


def test_sqlite_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "reg.db"
    reg = open_registry(str(path))
    reg.record_birth("gw-1", "g1", 9, {"devices": 3}, 5_000)
    reg.log_command(41, "g1", 5_000, 7_000, "{}")
    reg.close()
    again = open_registry(str(path))
    assert again.last_round_id() == 41
    assert [(g.gateway_id, g.bd_seq, g.online) for g in again.gateways()] == [("gw-1", 9, True)]
    again.close()
    assert isinstance(open_registry(None), FakeRegistry)
