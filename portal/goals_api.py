"""The goal-schedule and curtailment routes of the portal API (`add_goal_routes`, called by
`portal.api.create_app`): submit -> a signed `DispatchGoal` (cloud.dispatch) handed to the
dispatcher; read the caller's schedules; cancel by a superseding dispatch. Every write, accepted
or refused, is audited through the app's `audit` / `refuse`."""
import json
from typing import Annotated, Callable

from fastapi import FastAPI, Path as PathParam, Query

from portal import tokens as tok
from portal.dispatcher import DispatchFailed, Dispatcher, Signer
from portal.http import ID_PATTERN, MAX_GOAL_KW, TS_MAX_MS, ApiError, CurtailmentSubmit, GoalSubmit
from portal.store import PortalStore


def add_goal_routes(app: FastAPI, store: PortalStore, signer: Signer | None, dispatcher: Dispatcher,
                    clock: Callable[[], int], Goals, audit, refuse) -> None:
    """`Goals`: the goals:write token dependency; `audit(rec, action, target, outcome, detail)`,
    `refuse(rec, action, target, status, message, detail)` (raises) from the app."""
    # -- goals ----------------------------------------------------------------------------------
    def _sign_and_send(rec, action, target, group, points, valid_until, detail):
        from cloud.dispatch import DispatchError
        from edge_agent import topics

        if signer is None:
            refuse(rec, action, target, 503, "dispatch: no signing key configured (start the portal with "
                                             "--hmac-key-file)", detail)
        now = clock()
        did = store.next_dispatch_id(group, now)
        try:
            payload = signer.sign(group, did, points, now, valid_until)
        except DispatchError as exc:
            refuse(rec, action, target, 422, str(exc), detail)
        try:
            published = dispatcher.send(group, payload)
        except DispatchFailed as exc:
            return did, now, payload, None, str(exc)
        return did, now, payload, published, topics.dispatch(group)

    def _submit(rec, action, group, points, valid_until, detail, until_field="valid_until_ts_ms"):
        target = f"group:{group}"
        if not rec.may_group(group):
            refuse(rec, action, target, 403, f"group: the token is not granted group {group!r}", detail)
        if valid_until <= clock():
            refuse(rec, action, target, 422, f"{until_field}: already past", detail)
        did, now, payload, published, topic_or_error = _sign_and_send(rec, action, target, group, points,
                                                                      valid_until, detail)
        if published is None:
            sched = store.add_schedule(rec.stakeholder, rec.token_id, group, did, points, now, valid_until,
                                       "failed", False, payload.decode())
            refuse(rec, action, target, 502, topic_or_error, dict(detail, schedule_id=sched.schedule_id))
        sched = store.add_schedule(rec.stakeholder, rec.token_id, group, did, points, now, valid_until,
                                   "active", published, payload.decode())
        audit(rec, action, target, 201, dict(detail, schedule_id=sched.schedule_id, dispatch_id=did,
                                             published=published))
        return dict(sched.as_dict(), topic=topic_or_error, payload=json.loads(payload))

    @app.post("/v1/goals", tags=["goals"], status_code=201,
              summary="submit a goal schedule for a group (signed dispatch)")
    def submit_goal(rec: Goals, body: GoalSubmit) -> dict:
        detail = {"points": len(body.points), "valid_until_ts_ms": body.valid_until_ts_ms}
        return _submit(rec, "goal.submit", body.group, [(p.ts_ms, p.goal_kw) for p in body.points],
                       body.valid_until_ts_ms, detail)

    @app.post("/v1/curtailments", tags=["goals"], status_code=201,
              summary="submit a curtailment event: the group's enabled kW held at limit_kw from start to end "
                      "(signed dispatch)")
    def submit_curtailment(rec: Goals, body: CurtailmentSubmit) -> dict:
        detail = {"kind": "curtailment", "start_ts_ms": body.start_ts_ms, "end_ts_ms": body.end_ts_ms,
                  "limit_kw": body.limit_kw}
        out = _submit(rec, "curtailment.submit", body.group, [(body.start_ts_ms, body.limit_kw)], body.end_ts_ms,
                      detail, "end_ts_ms")
        return dict(out, kind="curtailment")

    def _own(rec: tok.TokenRecord, schedule_id: int):
        sched = store.schedule(schedule_id)
        if sched is None or not (rec.is_admin or sched.stakeholder == rec.stakeholder):
            return None            # another stakeholder's schedule is not found, not forbidden
        return sched

    ScheduleId = Annotated[int, PathParam(ge=1, le=TS_MAX_MS)]

    @app.get("/v1/goals", tags=["goals"], summary="the caller's goal schedules (admin: everyone's)")
    def list_goals(rec: Goals, group: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
                   stakeholder: Annotated[str | None, Query(pattern=ID_PATTERN)] = None) -> dict:
        who = (stakeholder if rec.is_admin else rec.stakeholder)
        return {"schedules": [s.as_dict() for s in store.schedules(who, group)]}

    @app.get("/v1/goals/{schedule_id}", tags=["goals"], summary="one of the caller's schedules")
    def get_goal(rec: Goals, schedule_id: ScheduleId) -> dict:
        sched = _own(rec, schedule_id)
        if sched is None:
            raise ApiError(404, f"schedule_id: no schedule {schedule_id} of stakeholder {rec.stakeholder!r}")
        return dict(sched.as_dict(), payload=json.loads(sched.payload))

    def _cancel(rec, schedule_id, action):
        target = f"schedule:{schedule_id}"
        sched = _own(rec, schedule_id)
        if sched is None:
            refuse(rec, action, target, 404, f"schedule_id: no schedule {schedule_id} of stakeholder "
                                             f"{rec.stakeholder!r}")
        if not rec.may_group(sched.group):
            refuse(rec, action, target, 403, f"group: the token is not granted group {sched.group!r}")
        if sched.status in ("cancelled", "failed"):
            refuse(rec, action, target, 409, f"status: schedule {schedule_id} is {sched.status}")
        if sched.status == "superseded":     # no longer in force: nothing to send
            store.set_status(schedule_id, "cancelled", clock(), None)
            audit(rec, action, target, 200, {"group": sched.group, "sent": False})
            return dict(store.schedule(schedule_id).as_dict(), sent=False)
        # the newest schedule of its group: a superseding tombstone dispatch (newer dispatch_id, its
        # only step at the end of time asking for no shedding), so nothing is in force from now on
        # and a replay of the cancelled schedule is refused by the controller.
        points = [(TS_MAX_MS - 1, MAX_GOAL_KW)]
        did, now, payload, published, topic_or_error = _sign_and_send(
            rec, action, target, sched.group, points, TS_MAX_MS, {"group": sched.group})
        if published is None:
            refuse(rec, action, target, 502, topic_or_error, {"group": sched.group})
        store.set_status(schedule_id, "cancelled", now, did)
        audit(rec, action, target, 200, {"group": sched.group, "cancel_dispatch_id": did, "published": published})
        return dict(store.schedule(schedule_id).as_dict(), sent=True, published=published, topic=topic_or_error,
                    payload=json.loads(payload))

    @app.delete("/v1/goals/{schedule_id}", tags=["goals"],
                summary="cancel a schedule: the group returns to the controller's fallback goal")
    def cancel_goal(rec: Goals, schedule_id: ScheduleId) -> dict:
        return _cancel(rec, schedule_id, "goal.cancel")

    @app.delete("/v1/curtailments/{schedule_id}", tags=["goals"],
                summary="cancel a curtailment event (a superseding signed dispatch)")
    def cancel_curtailment(rec: Goals, schedule_id: ScheduleId) -> dict:
        return _cancel(rec, schedule_id, "curtailment.cancel")
