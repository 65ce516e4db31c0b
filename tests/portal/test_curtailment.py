"""Curtailment events (POST/DELETE /v1/curtailments): a limit on a group's enabled kW from start
to end becomes a signed `DispatchGoal` the controller's own dispatch inbox accepts; cancel
supersedes it; every field is validated and every write audited; scopes and groups hold."""
import pytest

from cloud.dispatch import DispatchGoal
from cloud.goals import ConstantGoal
from tests.portal.conftest import KEY, NOW


def event(group="671.1", start=NOW + 60_000, end=NOW + 960_000, limit=12.5):
    return {"group": group, "start_ts_ms": start, "end_ts_ms": end, "limit_kw": limit}


def test_a_curtailment_is_a_signed_dispatch_in_force_from_start_to_end(portal):
    token, rec = portal.token("dso", ["goals:write"], ["671.1"])
    r = portal.call("POST", "/v1/curtailments", token, json=event())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "curtailment" and body["published"] is True
    assert body["points"] == [{"ts_ms": NOW + 60_000, "goal_kw": 12.5}] and body["valid_until_ts_ms"] == NOW + 960_000
    controller = DispatchGoal({"portal": KEY}, fallback=ConstantGoal(99.0))
    assert controller.offer("671.1", portal.dispatcher.sent[0][1], NOW) == ""
    assert controller.goal_kw("671.1", NOW + 30_000) == 99.0          # before the start: fallback
    assert controller.goal_kw("671.1", NOW + 60_000) == 12.5          # during: the limit
    assert controller.goal_kw("671.1", NOW + 959_000) == 12.5
    assert controller.goal_kw("671.1", NOW + 960_001) == 99.0         # after the end: fallback
    row = portal.store.audit_log()[0]
    assert (row["stakeholder"], row["action"], row["outcome"], row["detail"]["limit_kw"]) == \
        ("dso", "curtailment.submit", "201", 12.5)
    r = portal.call("DELETE", f"/v1/curtailments/{body['schedule_id']}", token)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert controller.offer("671.1", portal.dispatcher.sent[1][1], NOW + 61_000) == ""
    assert controller.source("671.1", NOW + 62_000) == "fallback"
    assert portal.store.audit_log()[0]["action"] == "curtailment.cancel"
    assert portal.call("DELETE", f"/v1/curtailments/{body['schedule_id']}", token).status_code == 409


@pytest.mark.parametrize("change, field", [
    (lambda b: b.pop("limit_kw"), "limit_kw: Field required"),
    (lambda b: b.update(limit_kw=-1.0), "limit_kw: "),
    (lambda b: b.update(limit_kw="5"), None),                         # pydantic coerces "5": accepted
    (lambda b: b.update(end_ts_ms=b["start_ts_ms"]), "end_ts_ms: not after start_ts_ms"),
    (lambda b: b.update(start_ts_ms="soon"), "start_ts_ms: "),
    (lambda b: b.update(group="../x"), "group: "),
    (lambda b: b.update(reason="storm"), "reason: Extra inputs are not permitted"),
    (lambda b: b.update(start_ts_ms=NOW - 20_000, end_ts_ms=NOW - 10_000), "end_ts_ms: already past"),
])
def test_every_bad_field_is_named(portal, change, field):
    token, _ = portal.token("dso", ["goals:write"], ["671.1"])
    body = event()
    change(body)
    r = portal.call("POST", "/v1/curtailments", token, json=body)
    if field is None:
        assert r.status_code == 201, r.text
        return
    assert r.status_code == 422 and r.json()["error"].startswith(field), r.text
    assert portal.dispatcher.sent == []
    assert portal.store.audit_log()[0]["outcome"] == "422"


def test_scope_group_and_stakeholder_isolation(portal):
    reader, _ = portal.token("tso", ["fleet:read"], ["*"])
    r = portal.call("POST", "/v1/curtailments", reader, json=event())
    assert r.status_code == 403 and 'scope="goals:write"' in r.headers["www-authenticate"]
    other, _ = portal.token("aggregator", ["goals:write"], ["671.2"])
    assert portal.call("POST", "/v1/curtailments", other, json=event()).status_code == 403
    owner, _ = portal.token("dso", ["goals:write"], ["671.1"])
    sid = portal.call("POST", "/v1/curtailments", owner, json=event()).json()["schedule_id"]
    assert portal.call("DELETE", f"/v1/curtailments/{sid}", other).status_code == 404   # not disclosed
    assert len(portal.dispatcher.sent) == 1
