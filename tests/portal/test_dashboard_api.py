"""What the dashboard reads: gateway health, the goal-vs-achieved series (rounds.csv followed as it
grows), the dashboard's static files; and /metrics in the Prometheus text format."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal.fleet import RoundsLog, SourceError
from tests.portal.conftest import NOW, write_rounds


# ---- gateway health ----------------------------------------------------------------------------------
@pytest.mark.parametrize("now, health_1, health_3", [
    (NOW, "online", "online"),                 # round 101's vectors expire at NOW + 2000
    (NOW + 2_000, "online", "online"),         # at the expiry instant: still in force
    (NOW + 2_001, "stale", "stale"),           # no vector in force: the online flag is not current
])
def test_gateway_health_from_the_registry_and_the_vectors_in_force(portal, now, health_1, health_3):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    portal.clock.ms = now
    gws = {g["gateway_id"]: g for g in portal.call("GET", "/v1/fleet/gateways", token).json()["gateways"]}
    assert (gws["gw-1"]["health"], gws["gw-2"]["health"], gws["gw-3"]["health"]) == (health_1, "offline", health_3)
    assert gws["gw-1"]["vector_round_id"] == 101 and gws["gw-1"]["vector_expiry_ms"] == NOW + 2000
    groups = {g["group"]: g for g in portal.call("GET", "/v1/fleet/groups", token).json()["groups"]}
    assert groups["671.1"]["health"] == {"online": int(health_1 == "online"), "stale": int(health_1 == "stale"),
                                         "offline": 1}
    assert groups["671.1"]["vector_in_force"] is (health_1 == "online")
    assert portal.call("GET", "/v1/fleet/gateways/gw-2", token).json()["health"] == "offline"


# ---- goal vs achieved ----------------------------------------------------------------------------------
def test_round_series_per_group_oldest_first_within_the_tokens_groups(portal):
    token, _ = portal.token("dso", ["fleet:read"], ["671.1"])
    body = portal.call("GET", "/v1/fleet/rounds", token).json()
    assert [s["group"] for s in body["groups"]] == ["671.1"]          # 671.2 is not granted
    s = body["groups"][0]
    assert s["round_id"] == [100, 101] and s["t_s"] == [200.0, 202.0] and s["rounds"] == 2
    assert s["goal_kw"] == [30.0, 30.0] and s["measured_enabled_kw"] == [31.5, 31.5]
    assert s["enabled_kw"] == [[5.5, 5.5], [10.0, 10.0], [16.0, 16.0]]     # one list per tier
    one = portal.call("GET", "/v1/fleet/rounds?group=671.1&limit=1", token).json()["groups"][0]
    assert one["round_id"] == [101] and one["enabled_kw"] == [[5.5], [10.0], [16.0]]
    assert portal.call("GET", "/v1/fleet/rounds?group=671.2", token).status_code == 403


@pytest.mark.parametrize("query", ["limit=0", "limit=5001", "limit=x", "group=a%2Fb", "group=" + "g" * 65])
def test_round_series_refuses_bad_queries(portal, query):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    r = portal.call("GET", "/v1/fleet/rounds?" + query, token)
    assert r.status_code == 422 and r.json()["error"].split(":")[0] in ("query.limit", "query.group")


def test_the_series_follows_rounds_csv_as_the_controller_appends(world, portal):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    path = world / "results" / "ctl" / "rounds.csv"
    series = lambda: {s["group"]: s for s in portal.call("GET", "/v1/fleet/rounds", token).json()["groups"]}
    assert series()["671.1"]["round_id"] == [100, 101]
    row = "204.0,102,671.1,28.0,schedule,28.0,False,29.0,False,1,1,0,0,5.0,9.0,15.0,0,0,1,0.1,0,0"
    with path.open("a") as fh:
        fh.write(row[:30])                                 # half a line: not read yet
        fh.flush()
        assert series()["671.1"]["round_id"] == [100, 101]
        fh.write(row[30:] + "\n")
    s = series()["671.1"]
    assert s["round_id"] == [100, 101, 102] and s["goal_kw"][-1] == 28.0 and s["enabled_kw"][2][-1] == 15.0
    g = {g["group"]: g for g in portal.call("GET", "/v1/fleet/groups", token).json()["groups"]}
    assert g["671.1"]["latest_round"]["round_id"] == 102
    path.unlink()                                          # a restart rewrote the file
    write_rounds(path)
    assert series()["671.1"]["round_id"] == [100, 101]


def test_rounds_log_keeps_the_newest_rows_and_skips_torn_lines(tmp_path):
    path = tmp_path / "rounds.csv"
    lines = ["t_s,round_id,group,goal_kw,enabled_t0_kw"] + [f"{i * 2.0},{i},g,{i}.5,1.0" for i in range(10)]
    lines.insert(4, "garbage,with,too,many,cells,here")
    path.write_text("\n".join(lines) + "\n")
    log = RoundsLog(keep=4)
    columns, rows = log.read(path)
    assert columns == ["t_s", "round_id", "group", "goal_kw", "enabled_t0_kw"]
    assert [r["round_id"] for r in rows["g"]] == [6, 7, 8, 9]
    assert [r["round_id"] for r in log.read(path, limit=2)[1]["g"]] == [8, 9]
    assert log.latest(path)[1]["g"]["goal_kw"] == 9.5
    path.write_text("other,header\n1,2\n")                 # another file under the same name
    assert log.read(path) == (["other", "header"], {"None": [{"other": 1, "header": 2}]})
    path.write_bytes(b"t_s,group\n\xff\xfe,g\n")
    with pytest.raises(SourceError, match="rounds.csv: cannot read"):
        log.read(path)


def test_the_dashboard_is_static_and_self_contained(world):
    from fastapi.testclient import TestClient

    from portal.api import create_app
    from portal.store import FakePortalStore
    from portal.tokens import FakeTokenStore

    client = TestClient(create_app(FakeTokenStore(), FakePortalStore(), dashboard=True))
    html = client.get("/").text
    js = client.get("/static/app.js").text
    assert "<svg" not in html and 'id="charts"' in html and 'id="dlmp-heatmap"' in html
    for text in (html, js):                                # nothing fetched from anywhere else
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert client.get("/static/../portal.db").status_code == 404


# ---- /metrics ---------------------------------------------------------------------------------------
def scrape(portal, token):
    r = portal.call("GET", "/metrics", token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_metrics_scope(portal):
    assert portal.call("GET", "/metrics").status_code == 401
    fleet, _ = portal.token("dso", ["fleet:read"], ["*"])
    r = portal.call("GET", "/metrics", fleet)
    assert r.status_code == 403 and 'scope="metrics:read"' in r.headers["www-authenticate"]
    ops, _ = portal.token("ops", ["metrics:read"])
    assert portal.call("GET", "/metrics", ops).status_code == 200
    admin, _ = portal.token("root", ["admin"])
    assert portal.call("GET", "/metrics", admin).status_code == 200


def test_metrics_count_requests_by_route_and_status(portal):
    ops, _ = portal.token("ops", ["metrics:read"])
    dso, _ = portal.token("dso", ["fleet:read", "goals:write"], ["671.1"])
    for _ in range(3):
        assert portal.call("GET", "/v1/fleet/groups", dso).status_code == 200
    assert portal.call("GET", "/v1/fleet/groups").status_code == 401
    assert portal.call("GET", "/v1/goals/7", dso).status_code == 404
    assert portal.call("GET", "/no/such/" + "x" * 300, dso).status_code == 404
    assert portal.call("BREW", "/v1/fleet/groups", dso).status_code == 405
    r = portal.call("POST", "/v1/goals", dso, content=b" " * (257 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413
    m = scrape(portal, ops)
    total = "colorgrid_portal_requests_total"
    assert value(m, total, route="/v1/fleet/groups", method="GET", status="200") == 3
    assert value(m, total, route="/v1/fleet/groups", method="GET", status="401") == 1
    assert value(m, total, route="/v1/goals/{schedule_id}", method="GET", status="404") == 1   # template, not path
    assert value(m, total, route="unmatched", method="GET", status="404") == 1                 # no client text
    assert value(m, total, route="/v1/fleet/groups", method="other", status="405") == 1
    assert value(m, total, route="unmatched", method="POST", status="413") == 1
    hist = "colorgrid_portal_request_duration_seconds"
    assert value(m, hist + "_count", route="/v1/fleet/groups", method="GET") == 4
    assert value(m, hist + "_bucket", route="/v1/fleet/groups", method="GET", le="+Inf") == 4
    assert 0 < value(m, hist + "_sum", route="/v1/fleet/groups", method="GET") < 10
    assert not any("x" * 50 in str(k) for k in m)


def test_metrics_count_audit_writes_and_tokens(portal):
    ops, _ = portal.token("ops", ["metrics:read"])
    vpp, vrec = portal.token("vpp", ["goals:write"], ["671.1"])
    iso, _ = portal.token("iso", ["market:read"])
    body = {"group": "671.1", "points": [{"ts_ms": NOW + 60_000, "goal_kw": 40.0}], "valid_until_ts_ms": NOW + 600_000}
    assert portal.call("POST", "/v1/goals", vpp, json=body).status_code == 201
    assert portal.call("POST", "/v1/goals", vpp, json=dict(body, group="671.2")).status_code == 403
    assert portal.call("POST", "/v1/goals", vpp, json={"group": "671.1"}).status_code == 422
    assert portal.call("POST", "/v1/goals", iso, json=body).status_code == 403          # scope missing
    m = scrape(portal, ops)
    audit = "colorgrid_portal_audit_writes_total"
    assert value(m, audit, action="goal.submit", outcome="201") == 1
    assert value(m, audit, action="goal.submit", outcome="403") == 1
    assert value(m, audit, action="POST /v1/goals", outcome="422") == 1
    assert value(m, audit, action="POST /v1/goals", outcome="403") == 1
    assert sum(v for (name, _), v in m.items() if name == audit) == len(portal.store.audit_log()) == 4
    assert value(m, "colorgrid_portal_tokens_active") == 3
    portal.tokens.revoke(vrec.token_id)
    portal.token("old", ["fleet:read"], ttl_s=1)
    portal.clock.ms += 2_000
    m = scrape(portal, ops)
    assert value(m, "colorgrid_portal_tokens_active") == 2
    assert (value(m, "colorgrid_portal_tokens", status="active"), value(m, "colorgrid_portal_tokens", status="revoked"),
            value(m, "colorgrid_portal_tokens", status="expired")) == (2, 1, 1)


def test_metrics_report_the_fleet_per_group(portal):
    ops, _ = portal.token("ops", ["metrics:read"])
    m = scrape(portal, ops)
    assert value(m, "colorgrid_fleet_source_up") == 1
    assert value(m, "colorgrid_fleet_gateways", group="671.1", health="online") == 1
    assert value(m, "colorgrid_fleet_gateways", group="671.1", health="offline") == 1
    assert value(m, "colorgrid_fleet_goal_kw", group="671.1") == 30.0
    assert value(m, "colorgrid_fleet_enabled_kw", group="671.1") == 31.5
    assert value(m, "colorgrid_fleet_tracking_error_kw", group="671.1") == pytest.approx(1.5)
    assert (value(m, "colorgrid_fleet_missing", group="671.2"), value(m, "colorgrid_fleet_fail_safe", group="671.2")) == (1, 1)


def test_metrics_survive_a_broken_source(world, portal):
    ops, _ = portal.token("ops", ["metrics:read"])
    (world / "results" / "ctl" / "rounds.csv").write_bytes(b"t_s,group\n\xff\xfe,g\n")
    m = scrape(portal, ops)
    assert value(m, "colorgrid_fleet_source_up") == 0 and value(m, "colorgrid_portal_tokens_active") == 1
    dso, _ = portal.token("dso", ["fleet:read"], ["*"])
    r = portal.call("GET", "/v1/fleet/rounds", dso)
    assert r.status_code == 503 and r.json()["error"].startswith("source: rounds.csv")
