"""The portal's request bodies (pydantic; every error names its field) and HTTP plumbing: the API
error, validation-error lines, JSON-safe values, the request-body size limit (ASGI middleware)."""

import json
import math
import re
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from portal import tokens as tok

TS_MAX_MS = 2 ** 53 - 1
MAX_POINTS = 2_880
MAX_GOAL_KW = 1e9
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# ---- request bodies ------------------------------------------------------------------------------
StrictTs = Annotated[int, Field(strict=True, ge=0, le=TS_MAX_MS)]


class GoalPoint(BaseModel):
    """One step of a piecewise-constant schedule: `goal_kw` holds from `ts_ms` to the next point."""
    model_config = ConfigDict(extra="forbid")
    ts_ms: StrictTs = Field(description="UTC epoch ms the step starts")
    goal_kw: float = Field(ge=0, le=MAX_GOAL_KW, allow_inf_nan=False, description="total enabled kW wanted")


class GoalSubmit(BaseModel):
    """A goal schedule for one control group (becomes a signed dispatch, docs/mqtt.md)."""
    model_config = ConfigDict(extra="forbid")
    group: str = Field(pattern=ID_PATTERN, description="control group (location id, e.g. 671.1)")
    points: list[GoalPoint] = Field(min_length=1, max_length=MAX_POINTS)
    valid_until_ts_ms: StrictTs = Field(description="end of the last step; then the controller's fallback goal")

    @field_validator("points")
    @classmethod
    def _increasing(cls, points: list[GoalPoint]) -> list[GoalPoint]:
        for i in range(1, len(points)):
            if points[i].ts_ms <= points[i - 1].ts_ms:
                raise ValueError(f"points[{i}].ts_ms: not after the previous point")
        return points

    @field_validator("valid_until_ts_ms")
    @classmethod
    def _after_last(cls, value: int, info) -> int:
        points = info.data.get("points")
        if points and value <= points[-1].ts_ms:
            raise ValueError("not after the last point")
        return value


class CurtailmentSubmit(BaseModel):
    """A curtailment event: the group's enabled kW held at `limit_kw` from `start_ts_ms` to
    `end_ts_ms`, then the controller's fallback goal (a one-step signed dispatch)."""
    model_config = ConfigDict(extra="forbid")
    group: str = Field(pattern=ID_PATTERN, description="control group (location id, e.g. 671.1)")
    start_ts_ms: StrictTs = Field(description="UTC epoch ms the curtailment starts")
    end_ts_ms: StrictTs = Field(description="UTC epoch ms it ends")
    limit_kw: float = Field(ge=0, le=MAX_GOAL_KW, allow_inf_nan=False, description="enabled kW allowed meanwhile")

    @field_validator("end_ts_ms")
    @classmethod
    def _after_start(cls, value: int, info) -> int:
        start = info.data.get("start_ts_ms")
        if start is not None and value <= start:
            raise ValueError("not after start_ts_ms")
        return value


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stakeholder: str = Field(pattern=ID_PATTERN)
    scopes: list[str] = Field(min_length=1, max_length=len(tok.SCOPES))
    groups: list[str] = Field(default_factory=list, max_length=1000)
    ttl_s: float = Field(gt=0, le=tok.MAX_TTL_S, allow_inf_nan=False)

    @field_validator("scopes")
    @classmethod
    def _known(cls, scopes: list[str]) -> list[str]:
        for i, s in enumerate(scopes):
            if s not in tok.SCOPES:
                raise ValueError(f"scopes[{i}]: unknown scope {s!r} (one of {', '.join(tok.SCOPES)})")
        return scopes

    @field_validator("groups")
    @classmethod
    def _ids(cls, groups: list[str]) -> list[str]:
        for i, g in enumerate(groups):
            if g != tok.ALL_GROUPS and not re.match(ID_PATTERN, g):
                raise ValueError(f"groups[{i}]: expected a group id or '*'")
        return groups


# ---- helpers ------------------------------------------------------------------------------------
def _loc(loc) -> str:
    parts = [p for p in loc if p != "body"] or list(loc)
    text = "body" if parts and isinstance(parts[0], int) else ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "body"


def _validation_lines(exc: RequestValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        where = _loc(err.get("loc", ()))
        if msg.split(":")[0].startswith(("points[", "scopes[", "groups[")):
            lines.append(msg)                      # the validator already names the element
        else:
            lines.append(f"{where}: {msg}")
    return lines or ["body: invalid"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413, however it is sent."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reply_413(self, send) -> None:
        body = json.dumps({"error": f"body: larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    return await self._reply_413(send)
        state = {"over": False, "started": False, "seen": 0}

        async def limited_receive():
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if state["over"]:
                return
            state["started"] = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self._reply_413(send)
