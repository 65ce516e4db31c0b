"""The stakeholder API: auth (RFC 6750), scopes, stakeholder isolation, validated and audited writes,
fleet twin, command log, market files and ledger proofs."""
import json

import pytest

from cloud.dispatch import DispatchGoal
from cloud.goals import ConstantGoal
from portal.dispatcher import FakeDispatcher
from tests.portal.conftest import KEY, NOW, Portal

READ_ALL = ["fleet:read", "goals:write", "market:read"]


def goal(group="671.1", kw=(40.0, 35.5), start=NOW + 60_000, until=NOW + 3_600_000):
    return {"group": group, "points": [{"ts_ms": start + i * 300_000, "goal_kw": v} for i, v in enumerate(kw)],
            "valid_until_ts_ms": until}


# ---- authentication and scopes ---------------------------------------------------------------------
def test_no_token_gets_401_without_an_error_code(portal):
    r = portal.call("GET", "/v1/fleet/groups")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="colorgrid"'
    assert r.json()["error"].startswith("token: missing")


@pytest.mark.parametrize("header", ["Bearer cgp_0123456789ab_" + "x" * 43, "Bearer nonsense", "Basic dXNlcjpwdw=="])
def test_a_bad_token_gets_401(portal, header):
    r = portal.call("GET", "/v1/fleet/groups", headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Bearer realm="colorgrid"')
    if header.startswith("Bearer"):
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_expired_and_revoked_tokens_get_401_on_the_very_next_call(portal):
    token, rec = portal.token("dso", ["fleet:read"], ["*"], ttl_s=10)
    assert portal.call("GET", "/v1/fleet/groups", token).status_code == 200
    portal.clock.ms += 10_000
    r = portal.call("GET", "/v1/fleet/groups", token)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.json()["error"] == "token: token expired"
    token2, rec2 = portal.token("dso", ["fleet:read"], ["*"])
    assert portal.call("GET", "/v1/fleet/groups", token2).status_code == 200
    portal.tokens.revoke(rec2.token_id)
    r = portal.call("GET", "/v1/fleet/groups", token2)
    assert r.status_code == 401 and r.json()["error"] == "token: token revoked"


def test_a_missing_scope_gets_403_insufficient_scope(portal):
    token, _ = portal.token("iso", ["market:read"])
    r = portal.call("GET", "/v1/fleet/groups", token)
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"] and 'scope="fleet:read"' in r.headers["www-authenticate"]
    assert r.json()["error"] == "scope: this call needs fleet:read"
    r = portal.call("POST", "/v1/goals", token, json=goal())
    assert r.status_code == 403
    assert portal.store.audit_log()[0]["outcome"] == "403"          # a refused write is audited too
    assert portal.call("GET", "/v1/audit", token).status_code == 403


def test_whoami_never_shows_the_hash(portal):
    token, rec = portal.token("dso", ["fleet:read"], ["671.1"])
    body = portal.call("GET", "/v1/token", token).json()
    assert body["stakeholder"] == "dso" and body["groups"] == ["671.1"] and body["status"] == "active"
    assert rec.token_hash not in json.dumps(body) and token not in json.dumps(body)


# ---- the fleet: digital twin, per-group per-tier state, command log --------------------------------
def test_groups_per_tier_and_health(portal):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    groups = {g["group"]: g for g in portal.call("GET", "/v1/fleet/groups", token).json()["groups"]}
    g1 = groups["671.1"]
    assert (g1["gateways"], g1["online"], g1["offline"], g1["devices"], g1["capacity_kw"]) == (2, 1, 1, 20, 40.0)
    assert g1["tiers"] == ["green", "yellow", "black"]
    assert g1["latest_vector"]["round_id"] == 101 and g1["latest_vector"]["p_off"] == [0.1, 0, 0]
    assert g1["latest_round"]["enabled_kw"] == [5.5, 10.0, 16.0] and g1["latest_round"]["goal_kw"] == 30.0
    g2 = groups["671.2"]["latest_round"]
    assert (g2["n_live"], g2["n_fresh"], g2["n_missing"], g2["n_fail_safe"]) == (1, 0, 1, 1)


def test_gateway_twin(portal):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    gws = {g["gateway_id"]: g for g in portal.call("GET", "/v1/fleet/gateways", token).json()["gateways"]}
    assert gws["gw-2"]["online"] is False and gws["gw-2"]["last_session_event_ts_ms"] == NOW - 10_000
    assert gws["gw-1"]["online"] is True and gws["gw-1"]["tiers"] == ["green", "yellow", "black"]
    one = portal.call("GET", "/v1/fleet/gateways/gw-3", token).json()
    assert one["group"] == "671.2" and one["bd_seq"] == 3 and one["params"] == {"round_ms": 2000}
    assert portal.call("GET", "/v1/fleet/gateways/gw-404", token).status_code == 404


def test_command_log_newest_first(portal):
    token, _ = portal.token("dso", ["fleet:read"], ["*"])
    cmds = portal.call("GET", "/v1/commands?limit=3", token).json()["commands"]
    assert [(c["round_id"], c["group"]) for c in cmds] == [(101, "671.2"), (101, "671.1"), (100, "671.2")]
    only = portal.call("GET", "/v1/commands?group=671.1", token).json()["commands"]
    assert {c["group"] for c in only} == {"671.1"} and len(only) == 2


# ---- stakeholder isolation -----------------------------------------------------------------------
def test_one_stakeholder_cannot_read_or_write_anothers_resources(portal):
    a, _ = portal.token("aggregator-a", READ_ALL, ["671.1"])
    b, _ = portal.token("aggregator-b", READ_ALL, ["671.2"])
    created = portal.call("POST", "/v1/goals", a, json=goal("671.1"))
    assert created.status_code == 201, created.text
    sid = created.json()["schedule_id"]
    # B cannot see, read or cancel A's schedule, nor dispatch to or read A's group
    assert portal.call("GET", "/v1/goals", b).json()["schedules"] == []
    assert portal.call("GET", f"/v1/goals/{sid}", b).status_code == 404
    assert portal.call("DELETE", f"/v1/goals/{sid}", b).status_code == 404
    r = portal.call("POST", "/v1/goals", b, json=goal("671.1"))
    assert r.status_code == 403 and r.json()["error"] == "group: the token is not granted group '671.1'"
    assert portal.call("GET", "/v1/fleet/groups/671.1", b).status_code == 403
    assert portal.call("GET", "/v1/fleet/gateways?group=671.1", b).status_code == 403
    assert portal.call("GET", "/v1/fleet/gateways/gw-1", b).status_code == 404
    assert [g["group"] for g in portal.call("GET", "/v1/fleet/groups", b).json()["groups"]] == ["671.2"]
    assert {c["group"] for c in portal.call("GET", "/v1/commands", b).json()["commands"]} == {"671.2"}
    assert {g["group"] for g in portal.call("GET", "/v1/fleet/gateways", b).json()["gateways"]} == {"671.2"}
    # A still owns it, unchanged; an admin sees everyone's
    assert portal.call("GET", f"/v1/goals/{sid}", a).json()["status"] == "active"
    admin, _ = portal.token("dso", ["admin"])
    assert [s["stakeholder"] for s in portal.call("GET", "/v1/goals", admin).json()["schedules"]] == ["aggregator-a"]
    refused = [row for row in portal.store.audit_log() if row["stakeholder"] == "aggregator-b"]
    assert {(row["action"], row["outcome"]) for row in refused} == {("goal.cancel", "404"), ("goal.submit", "403")}


# ---- goal schedules: signed dispatches -------------------------------------------------------------
def test_submit_signs_a_dispatch_the_controller_accepts(portal):
    token, rec = portal.token("vpp", ["goals:write"], ["671.1"])
    r = portal.call("POST", "/v1/goals", token, json=goal())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["published"] is True and body["topic"] == "colorgrid/v1/dispatch/671.1"
    assert body["dispatch_id"] >= NOW and body["stakeholder"] == "vpp" and body["status"] == "active"
    [(group, payload)] = portal.dispatcher.sent
    assert group == "671.1" and json.loads(payload) == body["payload"]
    controller = DispatchGoal({"portal": KEY}, fallback=ConstantGoal(99.0))
    assert controller.offer("671.1", payload, NOW) == ""
    assert controller.goal_kw("671.1", NOW + 60_000) == 40.0 and controller.goal_kw("671.1", NOW) == 99.0
    row = portal.store.audit_log()[0]
    assert (row["stakeholder"], row["token_id"], row["action"], row["target"], row["outcome"]) == \
        ("vpp", rec.token_id, "goal.submit", "group:671.1", "201")
    assert row["ts_ms"] == NOW and row["detail"]["schedule_id"] == body["schedule_id"]
    again = portal.call("POST", "/v1/goals", token, json=goal(kw=(20.0,))).json()
    assert again["dispatch_id"] > body["dispatch_id"]             # increasing per group
    assert portal.call("GET", f"/v1/goals/{body['schedule_id']}", token).json()["status"] == "superseded"


def test_cancel_sends_a_superseding_dispatch_that_leaves_nothing_in_force(portal):
    token, _ = portal.token("vpp", ["goals:write"], ["671.1"])
    body = portal.call("POST", "/v1/goals", token, json=goal(start=NOW)).json()
    controller = DispatchGoal({"portal": KEY}, fallback=ConstantGoal(99.0))
    assert controller.offer("671.1", portal.dispatcher.sent[0][1], NOW) == ""
    assert controller.source("671.1", NOW + 1000) == "dispatch"
    r = portal.call("DELETE", f"/v1/goals/{body['schedule_id']}", token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_dispatch_id"] > body["dispatch_id"]
    assert controller.offer("671.1", portal.dispatcher.sent[1][1], NOW + 1000) == ""
    assert controller.source("671.1", NOW + 2000) == "fallback" and controller.goal_kw("671.1", NOW + 2000) == 99.0
    assert "replay" in controller.offer("671.1", portal.dispatcher.sent[0][1], NOW + 3000)   # the old one stays dead
    assert portal.call("DELETE", f"/v1/goals/{body['schedule_id']}", token).status_code == 409
    assert [row["action"] for row in portal.store.audit_log()[:3]] == ["goal.cancel", "goal.cancel", "goal.submit"]


def test_cancel_of_a_superseded_schedule_sends_nothing(portal):
    token, _ = portal.token("vpp", ["goals:write"], ["671.1"])
    first = portal.call("POST", "/v1/goals", token, json=goal()).json()
    portal.call("POST", "/v1/goals", token, json=goal(kw=(10.0,)))
    r = portal.call("DELETE", f"/v1/goals/{first['schedule_id']}", token)
    assert r.status_code == 200 and r.json()["sent"] is False and len(portal.dispatcher.sent) == 2


@pytest.mark.parametrize("change, field", [
    (lambda b: b.pop("group"), "group: Field required"),
    (lambda b: b.update(group="a/b"), "group: "),
    (lambda b: b.update(extra=1), "extra: Extra inputs are not permitted"),
    (lambda b: b["points"][1].update(ts_ms=b["points"][0]["ts_ms"]), "points[1].ts_ms: not after the previous point"),
    (lambda b: b["points"][0].update(goal_kw=-1), "points[0].goal_kw: "),
    (lambda b: b["points"][0].update(goal_kw=2e9), "points[0].goal_kw: "),
    (lambda b: b["points"][1].update(ts_ms="1700000000000"), "points[1].ts_ms: "),
    (lambda b: b["points"][1].update(ts_ms=True), "points[1].ts_ms: "),
    (lambda b: b["points"][1].update(ts_ms=2 ** 60), "points[1].ts_ms: "),
    (lambda b: b.update(points=[]), "points: "),
    (lambda b: b.update(points=[{"ts_ms": NOW + i, "goal_kw": 1} for i in range(2881)]), "points: "),
    (lambda b: b.update(valid_until_ts_ms=b["points"][-1]["ts_ms"]), "valid_until_ts_ms: not after the last point"),
    (lambda b: b.update(points=[{"ts_ms": NOW - 20_000, "goal_kw": 1}], valid_until_ts_ms=NOW - 10_000),
     "valid_until_ts_ms: already past"),
])
def test_every_bad_field_is_named_with_422_and_audited(portal, change, field):
    token, _ = portal.token("vpp", ["goals:write"], ["671.1"])
    body = goal()
    change(body)
    r = portal.call("POST", "/v1/goals", token, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(field), r.json()
    assert portal.dispatcher.sent == []
    row = portal.store.audit_log()[0]
    assert row["stakeholder"] == "vpp" and row["outcome"] == "422"


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'{"group": "671.1", "points": "x"}', "\u00ff".encode("latin-1")])
def test_hostile_bodies_get_422_not_500(portal, raw):
    token, _ = portal.token("vpp", ["goals:write"], ["671.1"])
    r = portal.call("POST", "/v1/goals", token, content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["error"].startswith(("body", "points")), r.text


def test_an_oversized_body_gets_413(portal):
    token, _ = portal.token("vpp", ["goals:write"], ["671.1"])
    r = portal.call("POST", "/v1/goals", token, content=b" " * (257 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"].startswith("body: larger than")


@pytest.mark.parametrize("url", ["/v1/goals/0", "/v1/goals/99999999999999999999999", "/v1/goals/x",
                                 "/v1/ledger/proofs/-1", "/v1/commands?limit=0", "/v1/commands?limit=10001",
                                 "/v1/fleet/groups/a%2Fb", "/v1/market/../../etc/passwd"])
def test_hostile_paths_are_refused_cleanly(portal, url):
    token, _ = portal.token("dso", ["admin"])
    r = portal.call("GET", url, token)
    assert r.status_code in (404, 422) and "error" in r.json() or r.status_code == 404


def test_without_a_signing_key_writes_get_503(world):
    p = Portal(world, signer=False)
    token, _ = p.token("vpp", ["goals:write"], ["671.1"])
    r = p.call("POST", "/v1/goals", token, json=goal())
    assert r.status_code == 503 and r.json()["error"].startswith("dispatch: no signing key")
    p.ledger.close()


def test_a_broker_that_refuses_gives_502_and_a_failed_schedule(world):
    disp = FakeDispatcher()
    disp.fail_with = "mqtt://127.0.0.1:1: connection refused"
    p = Portal(world, dispatcher=disp)
    token, _ = p.token("vpp", ["goals:write"], ["671.1"])
    r = p.call("POST", "/v1/goals", token, json=goal())
    assert r.status_code == 502 and r.json()["error"].startswith("broker: ")
    assert [s["status"] for s in p.call("GET", "/v1/goals", token).json()["schedules"]] == ["failed"]
    assert p.store.audit_log()[0]["outcome"] == "502"
    p.ledger.close()


def test_no_broker_returns_the_signed_payload(world):
    p = Portal(world, dispatcher=FakeDispatcher(published=False))
    token, _ = p.token("vpp", ["goals:write"], ["671.1"])
    body = p.call("POST", "/v1/goals", token, json=goal()).json()
    assert body["published"] is False and body["payload"]["sig"] and body["payload"]["key_id"] == "portal"
    p.ledger.close()


# ---- market results and the ledger ------------------------------------------------------------------
def test_market_tables_as_files(world, portal):
    token, _ = portal.token("iso", ["market:read"])
    index = portal.call("GET", "/v1market".replace("v1market", "v1/market"), token).json()
    trades_file = world / "results" / "te" / "trades.csv"
    assert index["tables"]["trades"] == {"file": "te/trades.csv", "columns": ["interval", "trade_id", "buyer_id",
                                                                             "seller_id", "qty_wh"], "rows": 2,
                                         "modified_ts_ms": trades_file.stat().st_mtime_ns // 1_000_000}
    assert "dlmp" not in index["tables"] and "dlmp" in index["known_tables"]
    assert index["ledger"]["checkpoints"] == 1 and index["ledger"]["threshold_k"] == 2
    trades = portal.call("GET", "/v1/market/trades?interval=1", token).json()
    assert trades["rows"] == [{"interval": 1, "trade_id": "t1", "buyer_id": "p2", "seller_id": "p1", "qty_wh": 250}]
    intervals = portal.call("GET", "/v1/market/intervals", token).json()["rows"]
    assert intervals[1]["clearing_price_uusd_per_kwh"] is None
    r = portal.call("GET", "/v1/market/dlmp", token)
    assert r.status_code == 404 and r.json()["error"] == "table: dlmp.csv is not in the results folder (yet)"
    assert portal.call("GET", "/v1/market/passwd", token).status_code == 404


def test_ledger_checkpoints_and_inclusion_proofs(portal):
    token, _ = portal.token("iso", ["market:read"])
    [cp] = portal.call("GET", "/v1/ledger/checkpoints", token).json()["checkpoints"]
    assert cp["period"] == 1 and len(cp["signatures"]) >= 2
    proof = portal.call("GET", f"/v1/ledger/proofs/{cp['last_seq']}", token).json()
    assert proof["verified"] is True and proof["tree_size"] == cp["last_seq"] - cp["first_seq"] + 1
    assert proof["statement"]["root"] == cp["statement"]["root"]
    r = portal.call("GET", f"/v1/ledger/proofs/{cp['last_seq'] + 1}", token)
    assert r.status_code == 404 and r.json()["error"].startswith("seq: ")


# ---- admin: tokens and audit over the API -------------------------------------------------------------
def test_admin_creates_and_revokes_tokens_audited(portal):
    admin, admin_rec = portal.token("dso", ["admin"])
    r = portal.call("POST", "/v1/tokens", admin, json={"stakeholder": "iso", "scopes": ["market:read"], "ttl_s": 60})
    assert r.status_code == 201
    new = r.json()
    assert portal.call("GET", "/v1/market", new["token"]).status_code == 200
    assert portal.call("DELETE", f"/v1/tokens/{new['token_id']}", admin).json()["status"] == "revoked"
    assert portal.call("GET", "/v1/market", new["token"]).status_code == 401
    bad = portal.call("POST", "/v1/tokens", admin, json={"stakeholder": "iso", "scopes": ["root"], "ttl_s": 60})
    assert bad.status_code == 422 and bad.json()["error"].startswith("scopes[0]: unknown scope")
    listed = portal.call("GET", "/v1/tokens", admin).json()["tokens"]
    assert all("token_hash" not in t and "token" not in t for t in listed)
    audit = portal.call("GET", "/v1/audit", admin).json()["audit"]
    assert [a["action"] for a in audit[:3]] == ["POST /v1/tokens", "token.revoke", "token.create"]
    assert all(a["stakeholder"] == "dso" for a in audit[:3])


def test_openapi_documents_every_route(portal):
    paths = portal.client.get("/openapi.json").json()["paths"]
    assert {"/v1/fleet/groups", "/v1/goals", "/v1/goals/{schedule_id}", "/v1/ledger/proofs/{seq}"} <= set(paths)
    assert portal.client.get("/docs").status_code == 200
