"""The controller as it runs, read in the same process (`colorgrid serve --demo`, benches): what
its registry and rounds.csv cannot tell — per-gateway freshness, fail-safe and
store-and-forward depth, round latency, vectors sent and rejected.

Contract `LiveController`; `ControllerProbe(core, service)` reads a running
`cloud.rounds.ControllerCore` (`gateway_status()`, counters) and its `cloud.service.ControllerService`
(`rounds`, `missed_rounds`, `round_compute_ms`), copying what it reads (the controller runs on
another thread); `FakeLive` holds the same figures in plain attributes, for tests.

Gateway `state` (`LIVE_STATES`): `offline` (no live session), `fail_safe` (its last report says
it is in fail-safe), `stale` (online, but its last report is older than the controller's
staleness limit, 1.5 rounds), `online`.
"""
from __future__ import annotations

from typing import Protocol

LIVE_STATES = ("online", "stale", "fail_safe", "offline")


class LiveController(Protocol):
    def gateway_status(self, now_ms: int) -> dict[str, dict]:
        """gateway id -> {group, state, fresh, last_report_ts_ms, report_age_ms, fail_safe, store_depth}."""
        ...

    def counters(self) -> dict:
        """rounds, missed_rounds, vectors_published, vectors_rejected_by_gateways {reason: n},
        reports_rejected {reason: n}."""
        ...

    def round_latencies_ms(self, start: int) -> list[float]:
        """Round compute times (ms) from index `start` on (a growing list)."""
        ...


def _state(online: bool, fail_safe: bool, age_ms: int | None, stale_after_ms: int) -> str:
    if not online:
        return "offline"
    if fail_safe:
        return "fail_safe"
    if age_ms is None or age_ms > stale_after_ms:
        return "stale"
    return "online"


class ControllerProbe:
    def __init__(self, core, service) -> None:
        self.core, self.service = core, service
        self.stale_after_ms = int(core.aggregator.stale_after_ms)

    def gateway_status(self, now_ms: int) -> dict[str, dict]:
        out = {}
        for gid, s in self.core.gateway_status().items():
            rx = s["report_rx_ms"]
            age = None if rx is None else max(0, int(now_ms) - int(rx))
            state = _state(s["online"], s["fail_safe"], age, self.stale_after_ms)
            out[gid] = {"group": s["group"], "state": state, "fresh": state in ("online", "fail_safe"),
                        "last_report_ts_ms": s["report_ts_ms"], "last_report_rx_ms": rx, "report_age_ms": age,
                        "fail_safe": s["fail_safe"], "store_depth": s["store_depth"]}
        return out

    def counters(self) -> dict:
        core, svc = self.core, self.service
        return {"rounds": int(svc.rounds), "missed_rounds": int(svc.missed_rounds),
                "vectors_published": int(core.published),
                "vectors_rejected_by_gateways": dict(core.vectors_rejected_by_gateways),
                "reports_rejected": dict(core.rejected)}

    def round_latencies_ms(self, start: int) -> list[float]:
        return list(self.service.round_compute_ms[start:])


class FakeLive:
    """Figures set by the test: `gateways` {id: status dict}, `counts`, `latencies`."""

    def __init__(self, gateways: dict | None = None, counts: dict | None = None,
                 latencies: list[float] | None = None) -> None:
        self.gateways = gateways or {}
        self.counts = counts or {"rounds": 0, "missed_rounds": 0, "vectors_published": 0,
                                 "vectors_rejected_by_gateways": {}, "reports_rejected": {}}
        self.latencies = latencies if latencies is not None else []

    def gateway_status(self, now_ms):
        return {g: dict(s) for g, s in self.gateways.items()}

    def counters(self):
        return dict(self.counts)

    def round_latencies_ms(self, start):
        return list(self.latencies[start:])
