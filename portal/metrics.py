"""`/metrics` in the Prometheus text format (prometheus-client), one registry per app.

| metric | type | labels | what |
|---|---|---|---|
| `colorgrid_portal_requests_total` | counter | `route`, `method`, `status` | HTTP requests answered |
| `colorgrid_portal_request_duration_seconds` | histogram | `route`, `method` | time from request to the last body byte |
| `colorgrid_portal_audit_writes_total` | counter | `action`, `outcome` | audit rows this process wrote |
| `colorgrid_portal_tokens` | gauge | `status` | tokens in the store: `active`, `expired`, `revoked` |
| `colorgrid_portal_tokens_active` | gauge | – | tokens that authenticate now |
| `colorgrid_fleet_gateways` | gauge | `group`, `health` | gateways `online` / `stale` / `offline` (portal.fleet) |
| `colorgrid_fleet_goal_kw`, `colorgrid_fleet_enabled_kw` | gauge | `group` | the group's last round in rounds.csv |
| `colorgrid_fleet_tracking_error_kw` | gauge | `group` | that round's measured − goal |
| `colorgrid_fleet_fresh`, `colorgrid_fleet_missing`, `colorgrid_fleet_fail_safe` | gauge | `group` | its health counts (gateways) |
| `colorgrid_fleet_source_up` | gauge | – | 1 if registry and rounds.csv could be read at this scrape |

`route` is the route's template (`/v1/goals/{schedule_id}`), never the client's path: a request
that matches no route is counted as `unmatched`, a method outside the HTTP set as `other`, so no
client text becomes a label (bounded cardinality). Token and fleet gauges are read at scrape time.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("portal.metrics")

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_STATUSES = ("active", "expired", "revoked")


class _TokenCollector:
    def __init__(self, tokens, clock: Callable[[], int]) -> None:
        self.tokens, self.clock = tokens, clock

    def collect(self):
        now = self.clock()
        counts = dict.fromkeys(TOKEN_STATUSES, 0)
        for rec in self.tokens.tokens():
            status = rec.status(now)
            counts[status] = counts.get(status, 0) + 1
        by_status = GaugeMetricFamily("colorgrid_portal_tokens", "tokens in the store by status", labels=["status"])
        for status, n in sorted(counts.items()):
            by_status.add_metric([status], n)
        yield by_status
        yield GaugeMetricFamily("colorgrid_portal_tokens_active", "tokens that authenticate now",
                                value=counts.get("active", 0))


class _FleetCollector:
    def __init__(self, fleet, clock: Callable[[], int]) -> None:
        self.fleet, self.clock = fleet, clock

    def collect(self):
        from portal.fleet import HEALTH, SourceError

        up = GaugeMetricFamily("colorgrid_fleet_source_up", "1 if the registry and rounds.csv could be read")
        try:
            groups = self.fleet.groups(self.clock())
        except SourceError as exc:
            log.warning("metrics: fleet source: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gateways = GaugeMetricFamily("colorgrid_fleet_gateways", "gateways by health", labels=["group", "health"])
        per_round = {name: GaugeMetricFamily(f"colorgrid_fleet_{name}", text, labels=["group"]) for name, text in (
            ("goal_kw", "goal of the group's last round (kW)"),
            ("enabled_kw", "measured enabled kW of the group's last round"),
            ("tracking_error_kw", "measured enabled kW minus goal, last round"),
            ("fresh", "gateways with a fresh report, last round"),
            ("missing", "gateways without a fresh report (stale), last round"),
            ("fail_safe", "gateways reporting fail-safe, last round"))}
        for g, info in sorted(groups.items()):
            for h in HEALTH:
                gateways.add_metric([g, h], info["health"][h])
            r = info.get("latest_round") or {}
            goal, measured = r.get("goal_kw"), r.get("measured_enabled_kw")
            values = {"goal_kw": goal, "enabled_kw": measured,
                      "tracking_error_kw": (measured - goal) if _num(goal) and _num(measured) else None,
                      "fresh": r.get("n_fresh"), "missing": r.get("n_missing"), "fail_safe": r.get("n_fail_safe")}
            for name, value in values.items():
                if _num(value):
                    per_round[name].add_metric([g], float(value))
        yield gateways
        yield from per_round.values()


ROUND_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class _LiveCollector:
    """The controller running in this process (portal.live): round latency histogram, vectors
    sent and rejected, reports rejected, gateways per live state, store-and-forward depth."""

    def __init__(self, live, clock: Callable[[], int]) -> None:
        self.live, self.clock = live, clock
        self._seen = 0
        self._buckets = [0] * (len(ROUND_BUCKETS_S) + 1)
        self._sum = 0.0

    def _latency(self):
        from prometheus_client.core import HistogramMetricFamily

        import bisect

        new = self.live.round_latencies_ms(self._seen)
        self._seen += len(new)
        for ms in new:
            self._buckets[bisect.bisect_left(ROUND_BUCKETS_S, ms / 1000.0)] += 1
            self._sum += ms / 1000.0
        cumulative, total = [], 0
        for bound, n in zip(ROUND_BUCKETS_S + (float("inf"),), self._buckets):
            total += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily("colorgrid_controller_round_duration_seconds",
                                     "controller round compute time (aggregate, control law, sign, publish)",
                                     buckets=cumulative, sum_value=self._sum)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        from portal.live import LIVE_STATES

        yield self._latency()
        c = self.live.counters()
        yield CounterMetricFamily("colorgrid_controller_rounds", "control rounds run", value=c["rounds"])
        yield CounterMetricFamily("colorgrid_controller_missed_rounds", "rounds skipped (woke after the next boundary)",
                                  value=c["missed_rounds"])
        yield CounterMetricFamily("colorgrid_controller_vectors_sent", "control vectors published",
                                  value=c["vectors_published"])
        rej = CounterMetricFamily("colorgrid_controller_vectors_rejected", "vectors the gateways reported "
                                  "rejecting, by reason", labels=["reason"])
        for reason, n in sorted(c["vectors_rejected_by_gateways"].items()):
            rej.add_metric([str(reason)[:40]], n)
        yield rej
        rep = CounterMetricFamily("colorgrid_controller_reports_rejected", "gateway messages the controller "
                                  "refused, by reason", labels=["reason"])
        for reason, n in sorted(c["reports_rejected"].items()):
            rep.add_metric([str(reason)[:40]], n)
        yield rep
        status = self.live.gateway_status(self.clock())
        states = GaugeMetricFamily("colorgrid_controller_gateways", "gateways per live state (the controller's "
                                   "own view: online, stale, fail_safe, offline)", labels=["group", "state"])
        depth = GaugeMetricFamily("colorgrid_controller_store_forward_depth", "store-and-forward depth of the "
                                  "last reports, summed per group", labels=["group"])
        depth_max = GaugeMetricFamily("colorgrid_controller_store_forward_depth_max", "largest store-and-forward "
                                      "depth of one gateway's last report, per group", labels=["group"])
        per_group: dict[str, dict] = {}
        for s in status.values():
            if s.get("group") is None:
                continue
            row = per_group.setdefault(s["group"], {"states": dict.fromkeys(LIVE_STATES, 0), "depth": 0, "max": 0})
            row["states"][s["state"]] += 1
            d = int(s.get("store_depth") or 0)
            row["depth"] += d
            row["max"] = max(row["max"], d)
        for g, row in sorted(per_group.items()):
            for st, n in row["states"].items():
                states.add_metric([g, st], n)
            depth.add_metric([g], row["depth"])
            depth_max.add_metric([g], row["max"])
        yield states
        yield depth
        yield depth_max


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class PortalMetrics:
    """The app's metrics: `MetricsMiddleware` counts every request, `audited` every audit row."""

    def __init__(self, tokens=None, fleet=None, clock: Callable[[], int] | None = None, live=None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("colorgrid_portal_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("colorgrid_portal_request_duration_seconds", "request to last body byte",
                                 ["route", "method"], buckets=BUCKETS_S, registry=self.registry)
        self.audit_writes = Counter("colorgrid_portal_audit_writes", "audit rows written by this process",
                                    ["action", "outcome"], registry=self.registry)
        if tokens is not None:
            self.registry.register(_TokenCollector(tokens, clock))
        if fleet is not None:
            self.registry.register(_FleetCollector(fleet, clock))
        if live is not None:
            self.registry.register(_LiveCollector(live, clock))

    def audited(self, action: str, outcome: str) -> None:
        self.audit_writes.labels(action[:80], str(outcome)[:8]).inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST



class MetricsMiddleware:
    """ASGI middleware (add it last: outermost): route template, status and duration of every
    request, also of those refused by inner middleware (413) or that raised (counted as 500)."""

    def __init__(self, app, metrics: PortalMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = {"status": 500}

        async def watched_send(msg):
            if msg["type"] == "http.response.start":
                state["status"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) if route is not None else None
            self.metrics.observe(path or "unmatched", scope.get("method", ""), state["status"],
                                 time.perf_counter() - start)
