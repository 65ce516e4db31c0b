"""The stakeholder HTTP API (FastAPI): `create_app(...)` -> an ASGI app; OpenAPI at /docs.

Every /v1 route needs a bearer token (portal.tokens) with the route's scope:

| route | scope | what |
|---|---|---|
| GET /v1/token | any | the calling token (stakeholder, scopes, groups, expiry) |
| GET /v1/fleet/groups, /v1/fleet/groups/{group} | fleet:read | per group and tier: gateways, capacity, latest vector and round |
| GET /v1/fleet/gateways[?group=], /v1/fleet/gateways/{id} | fleet:read | the gateway digital twin (with health) |
| GET /v1/fleet/rounds[?group=&limit=] | fleet:read | per group the newest rounds of rounds.csv (goal, achieved, per tier) |
| GET /v1/fleet/series[?group=&since_ts_ms=&until_ts_ms=&limit=] | fleet:read | the stored time series (goal, achieved, tracking error) |
| GET /v1/commands[?group=&limit=] | fleet:read | the command log (control vectors published) |
| POST /v1/goals | goals:write | submit a goal schedule -> a signed `DispatchGoal` payload |
| GET /v1/goals, /v1/goals/{id} | goals:write | the caller's own schedules (admin: everyone's) |
| DELETE /v1/goals/{id} | goals:write | cancel one of the caller's schedules |
| POST /v1/curtailments, DELETE /v1/curtailments/{id} | goals:write | a curtailment event (limit kW from start to end) -> a signed `DispatchGoal`; cancel |
| GET /v1/market, /v1/market/{table} | market:read | market results as files (LEM, P2P) |
| GET /v1/ledger, /v1/ledger/checkpoints, /v1/ledger/proofs/{seq} | market:read | settlement ledger |
| GET /v1/audit, GET/POST /v1/tokens, DELETE /v1/tokens/{id} | admin | audit log, token admin |
| GET /metrics | metrics:read | Prometheus text format (portal.metrics) |

Errors are JSON `{"error": "<field>: <reason>"}`: 401 with `WWW-Authenticate: Bearer ...`
(RFC 6750: no error code when no token was sent, `error="invalid_token"` for an unknown, expired
or revoked one), 403 (`error="insufficient_scope"` for a missing scope; a group the token is not
granted), 404, 409, 413 (body over `max_body_bytes`), 422 (validation: every error names its
field), 502 (the broker did not take a dispatch), 503 (a source or the signing key is missing).
Every write, accepted or refused, is audited (who, when, what) in the portal store.
"""

import json
import logging
from typing import Annotated, Any, Callable

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from portal import tokens as tok
from portal.dispatcher import Dispatcher, ReturnDispatcher, Signer
from portal.goals_api import add_goal_routes
from portal.http import (ID_PATTERN, TS_MAX_MS, ApiError, BodyLimit, TokenCreate,
                         _json_safe, _validation_lines)
from portal.fleet import MAX_SERIES_ROUNDS, FleetView, SourceError
from portal.market import TABLES, LedgerReader, MarketResults, NotCovered
from portal.metrics import MetricsMiddleware, PortalMetrics
from portal.store import PortalStore

log = logging.getLogger("portal.api")

REALM = "colorgrid"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _fast_json(obj: Any) -> Response:
    """JSON of plain dicts/lists/numbers/text, encoded straight with `json.dumps` (non-finite
    floats as null): the fleet reads skip FastAPI's generic encoder, which costs ~5 ms for the
    state of 1,000 gateways (bench.api); the OpenAPI schema of the route is unchanged."""
    return Response(json.dumps(_json_safe(obj), separators=(",", ":"), allow_nan=False).encode(),
                    media_type="application/json")


# ---- the app ------------------------------------------------------------------------------------
def create_app(tokens: tok.TokenStore, store: PortalStore, fleet: FleetView | None = None,
               market: MarketResults | None = None, ledger: LedgerReader | None = None,
               signer: Signer | None = None, dispatcher: Dispatcher | None = None,
               clock: Callable[[], int] = tok.now_ms, max_body_bytes: int = 1 << 20,
               dashboard: bool = False, live=None) -> FastAPI:
    """The portal's ASGI app over its sources; any source may be None (its routes answer 503).
    `live` (portal.live.LiveController): the controller running in this process, for /metrics."""
    dispatcher = dispatcher or ReturnDispatcher()
    app = FastAPI(title="colorgrid portal", version="1",
                  description="Stakeholder API: fleet state (gateway digital twin), command log, goal "
                              "schedules (signed dispatches), market results and the settlement ledger. "
                              "Bearer tokens: `colorgrid token create`.")
    metrics = PortalMetrics(tokens, fleet, clock, live)
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)       # outermost: sees the 413s too
    bearer = HTTPBearer(auto_error=False, description="token from `colorgrid token create`")

    # -- errors -------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "body: not valid JSON"
        elif exc.status_code == 404:
            detail = f"path: no route {request.url.path[:200]!r}"
        elif exc.status_code == 405:
            detail = f"method: {request.method} not allowed on {request.url.path[:200]!r}"
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(SourceError)
    async def _source_error(request: Request, exc: SourceError):
        return JSONResponse({"error": f"source: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        lines = _validation_lines(exc)
        if request.method in WRITE_METHODS:
            rec = _token_of(request)
            if rec is not None:
                write_audit(rec.stakeholder, rec.token_id, _action(request), request.url.path, "422",
                            {"errors": lines})
        return JSONResponse({"error": lines[0], "errors": lines}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal: the request could not be served"}, status_code=500)

    def _token_of(request: Request) -> tok.TokenRecord | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        return tokens.authenticate(credentials.strip(), clock()).record

    def _action(request: Request) -> str:
        return f"{request.method} {request.scope.get('route').path if request.scope.get('route') else request.url.path}"

    # -- auth ---------------------------------------------------------------------------------
    def need(scope: str | None):
        # async: run on the event loop (one short indexed read of the token row), not on one of
        # the thread pool's 40 threads, which would all contend for the GIL with the controller
        # thread of `serve --demo` under load (bench.api)
        async def dependency(request: Request,
                             cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> tok.TokenRecord:
            if cred is None:
                raise ApiError(401, "token: missing bearer token (Authorization: Bearer …)",
                               {"WWW-Authenticate": f'Bearer realm="{REALM}"'})
            res = tokens.authenticate(cred.credentials, clock())
            if res.record is None:
                why = {"unknown": "unknown token", "expired": "token expired",
                       "revoked": "token revoked"}.get(res.reason, "invalid token")
                raise ApiError(401, f"token: {why}",
                               {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", '
                                                    f'error_description="{why}"'})
            if scope is not None and not res.record.has_scope(scope):
                if request.method in WRITE_METHODS:
                    write_audit(res.record.stakeholder, res.record.token_id, _action(request),
                                request.url.path, "403", {"missing_scope": scope})
                raise ApiError(403, f"scope: this call needs {scope}",
                               {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                                                    f'scope="{scope}"'})
            return res.record
        dependency.required_scope = scope or "any token"     # for docs/api.md (portal.apidoc)
        return dependency

    def write_audit(stakeholder: str, token_id: str, action: str, target: str, outcome: Any,
                    detail: dict | None = None) -> None:
        store.audit(clock(), stakeholder, token_id, action, target, str(outcome), detail)
        metrics.audited(action, outcome)

    def audit(rec: tok.TokenRecord, action: str, target: str, outcome: Any, detail: dict | None = None) -> None:
        write_audit(rec.stakeholder, rec.token_id, action, target, outcome, detail)

    def refuse(rec, action, target, status, message, detail=None):
        audit(rec, action, target, status, dict(detail or {}, error=message))
        raise ApiError(status, message)

    def need_fleet() -> FleetView:
        if fleet is None:
            raise ApiError(503, "source: no controller registry configured (--registry)")
        return fleet

    def check_group(rec: tok.TokenRecord, group: str) -> None:
        if not rec.may_group(group):
            raise ApiError(403, f"group: the token is not granted group {group!r}")

    Fleet = Annotated[tok.TokenRecord, Depends(need("fleet:read"))]
    Goals = Annotated[tok.TokenRecord, Depends(need("goals:write"))]
    Market = Annotated[tok.TokenRecord, Depends(need("market:read"))]
    Admin = Annotated[tok.TokenRecord, Depends(need("admin"))]
    Any_ = Annotated[tok.TokenRecord, Depends(need(None))]
    Group = Annotated[str, PathParam(pattern=ID_PATTERN)]
    Limit = Annotated[int, Query(ge=1, le=10_000)]

    # -- routes: service ------------------------------------------------------------------------
    @app.get("/health", tags=["service"], summary="liveness (no token)")
    async def health() -> dict:
        return {"ok": True, "ts_ms": clock()}

    @app.get("/v1/token", tags=["tokens"], summary="the calling token")
    async def whoami(rec: Any_) -> dict:
        return rec.public(clock())

    # -- fleet ----------------------------------------------------------------------------------
    groups_json: dict = {}         # (sources' stamp, vectors in force, token's groups) -> encoded groups

    @app.get("/v1/fleet/groups", tags=["fleet"], summary="state per control group and tier")
    async def groups(rec: Fleet) -> dict:
        view, now = need_fleet(), clock()
        state = view.groups(now)
        stamp = view.base_stamp()
        if stamp is None:
            return _fast_json({"ts_ms": now, "groups": [g for name, g in state.items() if rec.may_group(name)]})
        # the same sources, the same vectors in force and the same granted groups give the same
        # bytes: encoded once, shared by every reader until a round changes them (bench.api)
        key = (stamp, tuple(g["vector_in_force"] for g in state.values()), rec.is_admin, rec.groups)
        body = groups_json.get(key)
        if body is None:
            if len(groups_json) > 64:
                groups_json.clear()
            body = groups_json[key] = json.dumps(_json_safe([g for name, g in state.items() if rec.may_group(name)]),
                                                 separators=(",", ":"), allow_nan=False).encode()
        return Response(b'{"ts_ms":%d,"groups":%s}' % (now, body), media_type="application/json")

    @app.get("/v1/fleet/groups/{group}", tags=["fleet"], summary="one group's state per tier")
    async def group(rec: Fleet, group: Group) -> dict:
        check_group(rec, group)
        found = need_fleet().groups(clock()).get(group)
        if found is None:
            raise ApiError(404, f"group: no group {group!r} in the registry or results")
        return found

    @app.get("/v1/fleet/gateways", tags=["fleet"], summary="gateway digital twin: sessions and health")
    async def gateways(rec: Fleet, group: Annotated[str | None, Query(pattern=ID_PATTERN)] = None) -> dict:
        if group is not None:
            check_group(rec, group)
        now = clock()
        rows = [g for g in need_fleet().gateways(group, now) if rec.may_group(g["group"])]
        return _fast_json({"ts_ms": now, "gateways": rows})

    @app.get("/v1/fleet/gateways/{gateway_id}", tags=["fleet"], summary="one gateway's twin")
    async def gateway(rec: Fleet, gateway_id: Group) -> dict:
        for g in need_fleet().gateways(now_ms=clock()):
            if g["gateway_id"] == gateway_id and rec.may_group(g["group"]):
                return g
        raise ApiError(404, f"gateway_id: no gateway {gateway_id!r} in the token's groups")

    @app.get("/v1/fleet/rounds", tags=["fleet"],
             summary="goal vs achieved: per group the newest rounds of rounds.csv, oldest first")
    async def rounds(rec: Fleet, group: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_SERIES_ROUNDS)] = 300) -> dict:
        if group is not None:
            check_group(rec, group)
        series = need_fleet().round_series(limit)
        return _fast_json({"ts_ms": clock(), "groups": [s for g, s in sorted(series.items())
                                                        if rec.may_group(g) and (group is None or g == group)]})

    @app.get("/v1/fleet/series", tags=["fleet"],
             summary="the stored time series: goal, achieved and tracking error per group and round")
    async def series(rec: Fleet, group: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
               since_ts_ms: Annotated[int | None, Query(ge=0, le=TS_MAX_MS)] = None,
               until_ts_ms: Annotated[int | None, Query(ge=0, le=TS_MAX_MS)] = None,
               limit: Limit = 1000) -> dict:
        if group is not None:
            check_group(rec, group)
        rows = [r.as_dict() for r in store.series(group, since_ts_ms, until_ts_ms, None) if rec.may_group(r.group)]
        return _fast_json({"rows": rows[-limit:], "total": len(rows)})

    @app.get("/v1/commands", tags=["fleet"], summary="command log: control vectors published, newest first")
    async def commands(rec: Fleet, group: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
                 limit: Limit = 100) -> dict:
        if group is not None:
            check_group(rec, group)
        return {"commands": need_fleet().commands(group, limit, allowed=rec.may_group)}

    # -- goals and curtailments (portal.goals_api) -------------------------------------------------
    add_goal_routes(app, store, signer, dispatcher, clock, Goals, audit, refuse)

    # -- market -----------------------------------------------------------------------------------
    def need_market() -> MarketResults:
        if market is None:
            raise ApiError(503, "source: no results folder configured (--results)")
        return market

    @app.get("/v1/market", tags=["market"], summary="which market results exist")
    def market_index(rec: Market) -> dict:
        return {"tables": need_market().available(), "known_tables": sorted(TABLES),
                "ledger": ledger.info() if ledger is not None else None}

    @app.get("/v1/market/{table}", tags=["market"], summary="one results table (dlmp, schedule, settlement, trades, ...)")
    def market_table(rec: Market, table: str, limit: Limit = 1000,
                     offset: Annotated[int, Query(ge=0, le=10 ** 9)] = 0,
                     interval: Annotated[int | None, Query(ge=0, le=10 ** 9)] = None) -> dict:
        if table not in TABLES:
            raise ApiError(404, f"table: unknown table {table[:64]!r} (one of {', '.join(sorted(TABLES))})")
        found = need_market().table(table)
        if found is None:
            raise ApiError(404, f"table: {TABLES[table]} is not in the results folder (yet)")
        columns, rows = found
        if interval is not None:
            if "interval" not in columns:
                raise ApiError(422, f"interval: table {table} has no interval column")
            rows = [r for r in rows if r.get("interval") == interval]
        return {"table": table, "columns": columns, "total": len(rows),
                "rows": _json_safe(rows[offset:offset + limit])}

    def need_ledger() -> LedgerReader:
        if ledger is None or ledger.path() is None:
            raise ApiError(404, "ledger: no ledger.sqlite in the results folder")
        return ledger

    @app.get("/v1/ledger", tags=["ledger"], summary="the settlement ledger: entries, checkpoints, validators")
    def ledger_info(rec: Market) -> dict:
        return need_ledger().info()

    @app.get("/v1/ledger/checkpoints", tags=["ledger"], summary="Merkle checkpoints with validator signatures")
    def ledger_checkpoints(rec: Market) -> dict:
        return {"checkpoints": need_ledger().checkpoints()}

    @app.get("/v1/ledger/proofs/{seq}", tags=["ledger"], summary="RFC 6962 inclusion proof of one entry")
    def ledger_proof(rec: Market, seq: Annotated[int, PathParam(ge=0, le=TS_MAX_MS)]) -> dict:
        try:
            return need_ledger().proof(seq)
        except NotCovered as exc:
            raise ApiError(404, f"seq: {exc}") from None

    # -- admin ----------------------------------------------------------------------------------
    @app.get("/v1/audit", tags=["admin"], summary="audit log, newest first")
    def audit_log(rec: Admin, limit: Limit = 100,
                  stakeholder: Annotated[str | None, Query(pattern=ID_PATTERN)] = None) -> dict:
        return {"audit": store.audit_log(limit, stakeholder)}

    @app.get("/v1/tokens", tags=["admin"], summary="every token (never a hash or a secret)")
    def list_tokens(rec: Admin) -> dict:
        now = clock()
        return {"tokens": [t.public(now) for t in tokens.tokens()]}

    @app.post("/v1/tokens", tags=["admin"], status_code=201, summary="create a token (shown once)")
    def create_token(rec: Admin, body: TokenCreate) -> dict:
        try:
            token, new = tokens.create(body.stakeholder, body.scopes, body.ttl_s, body.groups, clock())
        except tok.TokenError as exc:
            refuse(rec, "token.create", f"stakeholder:{body.stakeholder}", 422, str(exc))
        audit(rec, "token.create", f"token:{new.token_id}", 201,
              {"stakeholder": new.stakeholder, "scopes": list(new.scopes), "groups": list(new.groups)})
        return dict(new.public(clock()), token=token)

    @app.delete("/v1/tokens/{token_id}", tags=["admin"], summary="revoke a token (refused from its next call)")
    def revoke_token(rec: Admin, token_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")]) -> dict:
        try:
            revoked = tokens.revoke(token_id, clock())
        except tok.TokenError as exc:
            refuse(rec, "token.revoke", f"token:{token_id}", 404, str(exc))
        audit(rec, "token.revoke", f"token:{token_id}", 200, {"stakeholder": revoked.stakeholder})
        return revoked.public(clock())

    # -- metrics --------------------------------------------------------------------------------
    @app.get("/metrics", tags=["service"], summary="Prometheus text format (requests, tokens, audit, fleet)",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus(rec: Annotated[tok.TokenRecord, Depends(need("metrics:read"))]) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    if dashboard:
        from portal.dashboard import mount
        mount(app)

    return app
