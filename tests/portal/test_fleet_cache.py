"""The per-group state is computed once per change of its sources (registry data version,
rounds.csv size) and shared by the readers in between: a change of either is seen on the next
read, and health follows the clock without a change."""
from cloud.registry import SqliteRegistry
from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder
from tests.portal.conftest import NOW, write_registry, write_rounds


def test_cached_group_state_follows_its_sources(tmp_path):
    write_registry(tmp_path / "registry.db")
    (tmp_path / "res").mkdir()
    write_rounds(tmp_path / "res" / "rounds.csv")
    view = FleetView(ReadOnlyRegistry(tmp_path / "registry.db"), ResultsFolder(tmp_path / "res"))
    first = view.groups(NOW)
    assert view.groups(NOW)["671.1"]["latest_round"] is first["671.1"]["latest_round"]     # shared
    assert first["671.1"]["health"] == {"online": 1, "stale": 0, "offline": 1}
    # the vector of round 101 expires at NOW + 2000: health follows the clock, nothing re-read
    assert view.groups(NOW + 2001)["671.1"]["health"] == {"online": 0, "stale": 1, "offline": 1}
    with (tmp_path / "res" / "rounds.csv").open("a") as fh:
        fh.write("204.0,102,671.1,33.0,schedule,33.0,False,29.0,False,1,1,0,0,5.5,10.0,13.5,0,0,1,0.1,0,0\n")
    assert view.groups(NOW)["671.1"]["latest_round"]["goal_kw"] == 33.0
    reg = SqliteRegistry(tmp_path / "registry.db")                  # the controller commits
    reg.record_birth("gw-9", "671.1", 1, {"devices": 3, "tiers": ["a"], "capacity_w": 1000}, NOW)
    reg.log_command(102, "671.1", NOW, NOW + 6000, '{"p_on":[1],"p_off":[0],"round_id":102}')
    reg.close()
    after = view.groups(NOW + 3000)["671.1"]
    assert after["gateways"] == 3 and after["latest_vector"]["round_id"] == 102
    assert after["health"] == {"online": 2, "stale": 0, "offline": 1}


def test_a_round_half_written_keeps_the_other_groups_vector(tmp_path):
    """The controller logs a round's vectors group by group: while round 102 has only 671.1's,
    671.2's newest vector is still round 101's (in force), not missing (stale)."""
    write_registry(tmp_path / "registry.db")
    reg = SqliteRegistry(tmp_path / "registry.db")
    reg.log_command(102, "671.1", NOW, NOW + 6000, '{"p_on":[1],"p_off":[0],"round_id":102}')
    reg.close()
    view = FleetView(ReadOnlyRegistry(tmp_path / "registry.db"), ResultsFolder(None))
    groups = view.groups(NOW + 1000)
    assert groups["671.1"]["latest_vector"]["round_id"] == 102
    assert groups["671.2"]["latest_vector"]["round_id"] == 101 and groups["671.2"]["vector_in_force"] is True
    assert groups["671.2"]["health"]["online"] == 1


def test_the_encoded_groups_answer_follows_sources_clock_and_token(tmp_path):
    from fastapi.testclient import TestClient

    from portal.api import create_app
    from portal.store import FakePortalStore
    from portal.tokens import FakeTokenStore
    from tests.portal.conftest import Clock

    write_registry(tmp_path / "registry.db")
    (tmp_path / "res").mkdir()
    write_rounds(tmp_path / "res" / "rounds.csv")
    clock, tokens = Clock(), FakeTokenStore()
    every, _ = tokens.create("tso", ["fleet:read"], 3600, ["*"], at_ms=clock())
    one, _ = tokens.create("dso", ["fleet:read"], 3600, ["671.2"], at_ms=clock())
    view = FleetView(ReadOnlyRegistry(tmp_path / "registry.db"), ResultsFolder(tmp_path / "res"))
    client = TestClient(create_app(tokens, FakePortalStore(), view, clock=clock))

    def groups(token):
        body = client.get("/v1/fleet/groups", headers={"Authorization": f"Bearer {token}"}).json()
        assert body["ts_ms"] == clock()
        return {g["group"]: g for g in body["groups"]}

    assert set(groups(every)) == {"671.1", "671.2"} and set(groups(one)) == {"671.2"}
    assert groups(every)["671.1"]["latest_round"]["goal_kw"] == 30.0
    with (tmp_path / "res" / "rounds.csv").open("a") as fh:
        fh.write("204.0,102,671.1,33.0,schedule,33.0,False,29.0,False,1,1,0,0,5.5,10.0,13.5,0,0,1,0.1,0,0\n")
    assert groups(every)["671.1"]["latest_round"]["goal_kw"] == 33.0
    assert groups(every)["671.1"]["health"]["online"] == 1
    clock.ms += 2001                                                  # the vectors expire
    assert groups(every)["671.1"]["health"] == {"online": 0, "stale": 1, "offline": 1}
    assert groups(one)["671.2"]["vector_in_force"] is False
