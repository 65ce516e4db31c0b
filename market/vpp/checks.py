"""Closed-loop checks of a dispatched day (issue 17 item 6), from what the fleet did, not from the
plan or the controller's own estimate.

    rows = [DispatchRow(...), ...]                  # or read_dispatch_csv("dispatch.csv", tiers)
    overall, by_location = delivery_rms_pct(rows)   # % of the mean baseline
    uses = contract_uses(rows, portfolio, interval_h, issued_ms)
    broken = [u for u in uses if not u.ok]

`dispatch.csv` has one row per location·interval: `location, interval, start_ms, baseline_kw,
cleared_kw` (what the LEM cleared), `reduction_kw` (what the plan honoured), `goal_kw`,
`delivered_kw` (baseline − the mean of the simulated devices' true enabled kW: the measurement, not
the controller's estimate), `error_kw` (delivered − cleared), and per sheddable tier
`<tier>_planned_kw` (the plan's split in shed order) and `<tier>_delivered_kw` (the tier's
undispatched enabled kW − its true enabled kW in the interval).

- **delivery RMS** per location = √mean_t (delivered − cleared)² / mean_t baseline × 100; overall the
  same over every location·interval (issue 17: ≤ 2 %).
- **contract use**: a tier counts as curtailed at a location in an interval when the plan gave it a
  part (> `TOL_KW`) *or* the fleet actually shed it (its delivered kW above `shed_share` of the
  holding's kW, default 2 %: the law's switching noise stays below). Per UTC day: hours = curtailed
  intervals × interval_h, events = runs of consecutive curtailed intervals, and (with `issued_ms`)
  the notice before the first one; each against the tier's contract.
- **AC with delivered loads** (`ac_with_delivered`): the LEM's AC power flow of every interval with
  the delivered reductions; violations the market's final AC check did not have are the ones
  delivery added (`violations_after_delivery`).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from market.vpp.portfolio import Portfolio
from market.vpp.supply import DAY_MS

TOL_KW = 1e-6
SHED_SHARE = 0.02
BASE_COLUMNS = ("location", "interval", "start_ms", "baseline_kw", "cleared_kw", "reduction_kw", "goal_kw",
                "delivered_kw", "error_kw")


class CheckError(ValueError):
    """A dispatch table that cannot be checked (the message names the file line or field)."""


@dataclass(frozen=True)
class DispatchRow:
    location: str
    interval: int
    start_ms: int
    baseline_kw: float
    cleared_kw: float
    reduction_kw: float
    goal_kw: float
    delivered_kw: float
    planned_tier_kw: tuple[float, ...]       # per sheddable tier, shed order
    delivered_tier_kw: tuple[float, ...]

    @property
    def error_kw(self) -> float:
        return self.delivered_kw - self.cleared_kw

    def cells(self) -> list:
        return [self.location, self.interval, self.start_ms, self.baseline_kw, self.cleared_kw, self.reduction_kw,
                self.goal_kw, self.delivered_kw, self.error_kw, *self.planned_tier_kw, *self.delivered_tier_kw]


def dispatch_columns(tiers: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"{t}_planned_kw" for t in tiers), *(f"{t}_delivered_kw" for t in tiers)]


def read_dispatch_csv(path: str | Path, tiers: Sequence[str]) -> list[DispatchRow]:
    """dispatch.csv (`dispatch_columns(tiers)`) as rows; CheckError names a missing column or bad line."""
    cols = dispatch_columns(tiers)
    out = []
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise CheckError(f"{path}: missing column(s) {', '.join(missing)}")
        for n, rec in enumerate(reader, start=2):
            try:
                num = {c: float(rec[c]) for c in cols[3:]}
                row = DispatchRow(rec["location"], int(rec["interval"]), int(rec["start_ms"]),
                                  *(num[c] for c in BASE_COLUMNS[3:8]),
                                  tuple(num[f"{t}_planned_kw"] for t in tiers),
                                  tuple(num[f"{t}_delivered_kw"] for t in tiers))
            except (TypeError, ValueError):
                raise CheckError(f"{path} line {n}: a number column is not a number") from None
            if not all(math.isfinite(v) for v in num.values()):
                raise CheckError(f"{path} line {n}: a number is not finite")
            out.append(row)
    return out


def delivery_rms_pct(rows: Iterable[DispatchRow]) -> tuple[float, dict[str, float]]:
    """(overall, {location: ...}) RMS of delivered − cleared, % of the mean baseline (module docstring)."""
    by_loc: dict[str, list[DispatchRow]] = {}
    for r in rows:
        by_loc.setdefault(r.location, []).append(r)
    if not by_loc:
        raise CheckError("delivery_rms_pct: no rows")

    def rms_pct(rs: list[DispatchRow]) -> float:
        base = sum(r.baseline_kw for r in rs) / len(rs)
        if base <= 0:
            raise CheckError(f"delivery_rms_pct: mean baseline of {rs[0].location} is {base:g} kW")
        return 100.0 * math.sqrt(sum(r.error_kw ** 2 for r in rs) / len(rs)) / base

    every = [r for rs in by_loc.values() for r in rs]
    return rms_pct(every), {loc: rms_pct(rs) for loc, rs in sorted(by_loc.items())}


@dataclass(frozen=True)
class ContractUse:
    location: str
    tier: str
    day: int                      # UTC day number (epoch ms // 86 400 000)
    intervals: tuple[int, ...]    # curtailed intervals of that day
    hours: float
    events: int
    notice_min: float | None      # before the first curtailed interval (None: not known / none curtailed)
    max_hours: float
    max_events: int
    min_notice_min: float

    @property
    def ok(self) -> bool:
        notice_ok = self.notice_min is None or self.notice_min + 1e-9 >= self.min_notice_min
        return self.hours <= self.max_hours + 1e-9 and self.events <= self.max_events and notice_ok

    def why(self) -> str:
        parts = []
        if self.hours > self.max_hours + 1e-9:
            parts.append(f"{self.hours:g} h > {self.max_hours:g} h")
        if self.events > self.max_events:
            parts.append(f"{self.events} events > {self.max_events}")
        if self.notice_min is not None and self.notice_min + 1e-9 < self.min_notice_min:
            parts.append(f"notice {self.notice_min:g} min < {self.min_notice_min:g} min")
        return f"{self.location} {self.tier} day {self.day}: " + ("; ".join(parts) or "ok")


CONTRACT_COLUMNS = ["location", "tier", "day", "curtailed_intervals", "hours", "max_hours", "events", "max_events",
                    "notice_min", "min_notice_min", "ok"]


def contract_uses(rows: Sequence[DispatchRow], portfolio: Portfolio, interval_h: float,
                  issued_ms: int | None = None, shed_share: float = SHED_SHARE) -> list[ContractUse]:
    """Per location·sheddable tier·UTC day with a holding: its curtailment against its contract."""
    tiers = portfolio.sheddable_tiers
    curtailed: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    days: set[tuple[str, int]] = set()
    for r in rows:
        day = r.start_ms // DAY_MS
        days.add((r.location, day))
        for i, tier in enumerate(tiers):
            h = portfolio.holding(r.location, tier)
            if h is None:
                continue
            if r.planned_tier_kw[i] > TOL_KW or r.delivered_tier_kw[i] > shed_share * h.kw + TOL_KW:
                curtailed.setdefault((r.location, tier, day), []).append((r.interval, r.start_ms))
    out = []
    for loc, day in sorted(days):
        for tier in tiers:
            h = portfolio.holding(loc, tier)
            if h is None or h.contract is None:
                continue
            got = sorted(curtailed.get((loc, tier, day), []))
            ts = tuple(t for t, _ in got)
            events = sum(1 for k, t in enumerate(ts) if k == 0 or ts[k - 1] != t - 1)
            notice = (got[0][1] - issued_ms) / 60_000 if got and issued_ms is not None else None
            c = h.contract
            out.append(ContractUse(loc, tier, int(day), ts, len(ts) * interval_h, events, notice,
                                   c.max_curtailment_h_per_day, c.max_events_per_day, c.min_notice_min))
    return out


def unplanned_shed_pct(rows: Iterable[DispatchRow], portfolio: Portfolio) -> float:
    """The largest share (%) of a holding's kW the fleet shed in an interval where the plan gave
    that tier nothing (0 when it never did)."""
    worst = 0.0
    for r in rows:
        for i, tier in enumerate(portfolio.sheddable_tiers):
            h = portfolio.holding(r.location, tier)
            if h is not None and h.kw > 0 and r.planned_tier_kw[i] <= TOL_KW:
                worst = max(worst, 100.0 * r.delivered_tier_kw[i] / h.kw)
    return worst


def contract_rows(uses: Iterable[ContractUse]) -> list[list]:
    return [[u.location, u.tier, u.day, " ".join(str(t) for t in u.intervals), u.hours, u.max_hours, u.events,
             u.max_events, "" if u.notice_min is None else u.notice_min, u.min_notice_min, u.ok] for u in uses]


def ac_with_delivered(feeder, market, result, shape: Sequence[float],
                      delivered: Mapping[tuple[str, int], float]) -> tuple[list, list]:
    """The AC power flow of every interval of a LEM result (`market.lem.iteration.clear_with_ac`)
    with the VPP's delivered instead of its cleared reduction (each location's tiers scaled to what
    was delivered there): (violations, those not in the market's own final AC check)."""
    import numpy as np

    from market.lem import ACPowerFlow, node_injections
    from market.lem.iteration import violations_of
    from market.vpp.supply import parse_offer_id

    schedule = {k: np.asarray(v, float).copy() for k, v in result.clearing.schedule_kw.items()}
    n = len(shape)
    for loc in sorted({loc for loc, _ in delivered}):
        ids = [r for r in schedule if (parse_offer_id(r) or ("", ""))[0] == loc]
        for t in range(n):
            total = sum(schedule[r][t] for r in ids)
            want = delivered.get((loc, t), 0.0)
            for r in ids:
                schedule[r][t] = schedule[r][t] * want / total if total > 1e-9 else 0.0
            if total <= 1e-9 and ids and abs(want) > 1e-9:
                schedule[ids[0]][t] = want
    inj = node_injections(market, result.net, schedule)
    ac = ACPowerFlow(feeder)
    found = [v for t in range(n) for v in violations_of(ac.solve(t, shape[t], inj[:, t]))]
    known = {(v.interval, v.kind, v.where) for v in result.violations}
    return found, [v for v in found if (v.interval, v.kind, v.where) not in known]
