"""Supply curves of demand reduction: per location and interval, what the VPP offers and at what price.

    curves = build_supply(portfolio, stats, starts_ms, interval_h=1.0, confidence=0.9,
                          priority=iso_price_usd_per_mwh)
    curves.curves[("671.1", 17)].steps       # (SupplyStep(tier, price_usd_per_mwh, p_kw), ...)
    market = with_vpp_offers(market_doc, curves)    # LEM offers, validated by market.lem.schema
    feeder_supply(curves)[17]                # the whole feeder's curve for the ISO

Per location l, interval t and sheddable tier i (black is never offered):

- **quantity** q[l,i,t] = min(`max_shed_share` × contracted kW of the holding, the `confidence`
  availability of the tier at the interval's hours of day) — the P90 of available flexibility for
  confidence 0.9 — times min(1, the location's response ratio) when `derate_by_response`.
  `max_shed_share` < 1 keeps part of each tier back: the control law cannot hold a whole tier off
  (devices in their enabled-refractory time and the fairness rotation leave some on), and what it
  cannot take from a tier it takes from the next one, which the contracts may not allow. A location·interval whose yield
  statistics miss any tier is not offered at all (its baseline would be unknown); `missing` says so.
- **price** (USD/MWh, one per location·tier) = 1000·compensation_usd_per_kwh + the per-event
  compensation spread over one interval of the tier's contracted kW
  (1000·compensation_usd_per_event / (kW·interval_h)); then never below the tier shed before it
  plus `TIE_USD_PER_MWH`: the control law sheds green first, so a cleared yellow step must find
  green already cleared — the first-shed tier is the cheapest.
- **contract limits**: a tier is offered only in intervals with at least its `min_notice_min`
  between `dispatch_at_ms` and the interval start; in at most max_curtailment_h_per_day/interval_h
  intervals per UTC day, forming at most max_events_per_day runs (events), chosen to maximise
  Σ `priority` (e.g. the ISO price; default: the quantity) — and only where every tier shed before
  it is offered too or has nothing enabled there (the law sheds in tier order, so a later tier
  cannot be curtailed while an earlier one still runs). So
  no clearing of these offers can break a contract. The daily energy limit (kW × contract hours)
  is kept in `daily_energy_limit_kwh` for the LEM's own daily-energy constraint (not in its schema
  yet); the interval choice above already implies it.
- **baseline** = Σ over tiers of the mean enabled kW at those hours (what the location draws when
  not dispatched; the dispatch goal is the baseline minus the cleared reduction).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from market.lem.schema import Market, load_market
from market.vpp.portfolio import Portfolio, TierContract
from market.vpp.yield_stats import YieldStats, hours_of

TIE_USD_PER_MWH = 0.01     # a later tier costs at least this much more than the one shed before it
OFFER_PREFIX = "vpp"
DAY_MS = 86_400_000
EMPTY_KW = 1e-6            # a tier with at most this mean enabled kW has nothing the law could shed


class SupplyError(ValueError):
    """Supply curves that cannot be built or exported (the message names the field)."""


@dataclass(frozen=True)
class SupplyStep:
    tier: str
    price_usd_per_mwh: float
    p_kw: float


@dataclass(frozen=True)
class LocationSupply:
    location: str
    interval: int
    start_ms: int
    baseline_kw: float
    black_kw: float
    steps: tuple[SupplyStep, ...]       # sheddable tiers, first-shed (cheapest) first; p_kw may be 0

    @property
    def total_kw(self) -> float:
        return sum(s.p_kw for s in self.steps)


@dataclass
class SupplyCurves:
    starts_ms: tuple[int, ...]
    interval_h: float
    confidence: float
    tiers: tuple[str, ...]                                   # sheddable tiers, shed order
    curves: dict[tuple[str, int], LocationSupply]
    prices: dict[tuple[str, str], float]                     # (location, tier) -> USD/MWh
    daily_energy_limit_kwh: dict[tuple[str, str], float]
    offered: dict[tuple[str, str], tuple[int, ...]]          # intervals each tier is offered in
    missing: list[str] = field(default_factory=list)

    @property
    def interval_ms(self) -> int:
        return int(round(self.interval_h * 3_600_000))

    def locations(self) -> list[str]:
        return sorted({loc for loc, _ in self.curves})

    def quantity_kw(self, location: str, tier: str, interval: int) -> float:
        curve = self.curves.get((location, interval))
        if curve is None:
            return 0.0
        return next((s.p_kw for s in curve.steps if s.tier == tier), 0.0)


def tier_price_usd_per_mwh(contract: TierContract, kw: float, interval_h: float) -> float:
    """1000·USD/kWh + the per-event compensation over one interval of `kw` (see the module docstring)."""
    price = 1000.0 * contract.compensation_usd_per_kwh
    if contract.compensation_usd_per_event > 0 and kw > 0:
        price += 1000.0 * contract.compensation_usd_per_event / (kw * interval_h)
    return price


def choose_intervals(priority: Sequence[float], eligible: Sequence[bool], max_intervals: int,
                     max_events: int) -> tuple[int, ...]:
    """Eligible intervals, at most `max_intervals` of them in at most `max_events` runs of consecutive
    intervals, maximising Σ priority (dynamic programme over (used, events, last taken)); among
    equally good sets the earliest (lexicographically smallest)."""
    # state (used, events, taken_last) -> (score, chosen as a linked list (t, rest))
    states: dict[tuple[int, int, bool], tuple[float, tuple | None]] = {(0, 0, False): (0.0, None)}
    for t, (p, ok) in enumerate(zip(priority, eligible)):
        nxt: dict[tuple[int, int, bool], tuple[float, tuple | None]] = {}

        def keep(key, value):
            if key not in nxt or _better(value, nxt[key]):
                nxt[key] = value

        for (used, events, taken), (score, chosen) in states.items():
            keep((used, events, False), (score, chosen))
            new_events = events + (0 if taken else 1)
            if ok and used < max_intervals and new_events <= max_events:
                keep((used + 1, new_events, True), (score + float(p), (t, chosen)))
        states = nxt
    best = None
    for value in states.values():
        if best is None or _better(value, best):
            best = value
    return _unlink(best[1])


def _unlink(chosen: tuple | None) -> tuple[int, ...]:
    out = []
    while chosen is not None:
        out.append(chosen[0])
        chosen = chosen[1]
    return tuple(sorted(out))


def _better(a: tuple[float, tuple | None], b: tuple[float, tuple | None]) -> bool:
    """Higher score; on a tie, the earlier intervals (lexicographically smaller set)."""
    if abs(a[0] - b[0]) > 1e-9 * max(1.0, abs(a[0]), abs(b[0])):
        return a[0] > b[0]
    return _unlink(a[1]) < _unlink(b[1])


def build_supply(portfolio: Portfolio, stats: YieldStats, starts_ms: Sequence[int], interval_h: float,
                 confidence: float = 0.9, priority: Sequence[float] | None = None,
                 dispatch_at_ms: int | None = None, derate_by_response: bool = False,
                 max_shed_share: float = 1.0) -> SupplyCurves:
    """Supply curves for the intervals starting at `starts_ms` (each `interval_h` long)."""
    if not 0.0 < max_shed_share <= 1.0:
        raise SupplyError(f"max_shed_share: expected a share in (0, 1], got {max_shed_share!r}")
    starts = tuple(int(s) for s in starts_ms)
    if not starts or not (math.isfinite(interval_h) and interval_h > 0):
        raise SupplyError("starts_ms: at least one interval, and interval_h > 0")
    if priority is not None and len(priority) != len(starts):
        raise SupplyError(f"priority: {len(priority)} values for {len(starts)} intervals")
    if tuple(stats.tiers) != portfolio.tiers:
        raise SupplyError(f"tiers: the statistics have {list(stats.tiers)}, the portfolio {list(portfolio.tiers)}")
    interval_ms = int(round(interval_h * 3_600_000))
    hours = [hours_of(s, s + interval_ms) for s in starts]
    sheddable = portfolio.sheddable_tiers
    curves: dict[tuple[str, int], LocationSupply] = {}
    prices, limits, offered, missing = {}, {}, {}, []
    for loc in portfolio.locations():
        ratio = stats.response_ratio(loc) if derate_by_response else None
        derate = 1.0 if ratio is None else min(1.0, max(0.0, ratio))
        known = []
        for t in range(len(starts)):
            exp = [stats.expected_kw(loc, tier, hours[t]) for tier in portfolio.tiers]
            if any(e is None for e in exp):
                lacking = [tier for tier, e in zip(portfolio.tiers, exp) if e is None]
                missing.append(f"{loc} interval {t}: no yield statistics for {', '.join(lacking)}")
                known.append(None)
            else:
                known.append(exp)
        floor, allowed_before = -math.inf, [k is not None for k in known]
        quantities: dict[str, list[float]] = {}
        for tier in sheddable:
            h = portfolio.holding(loc, tier)
            q = [0.0] * len(starts)
            if h is not None and h.kw > 0:
                for t in range(len(starts)):
                    if known[t] is not None:
                        avail = stats.available_kw(loc, tier, hours[t], confidence) or 0.0
                        q[t] = max(0.0, min(h.kw * max_shed_share, avail) * derate)
                price = max(tier_price_usd_per_mwh(h.contract, h.kw, interval_h), floor + TIE_USD_PER_MWH)
                floor = prices[(loc, tier)] = price
                limits[(loc, tier)] = h.contract.daily_energy_limit_kwh(h.kw)
                eligible = [allowed_before[t] and q[t] > 0 and _notice_ok(h.contract, starts[t], dispatch_at_ms)
                            for t in range(len(starts))]
                chosen = _choose_per_day(starts, priority if priority is not None else q, eligible,
                                         h.contract, interval_h)
                q = [q[t] if t in chosen else 0.0 for t in range(len(starts))]
                offered[(loc, tier)] = tuple(sorted(chosen))
            # the next tier may be curtailed at t only if this one is too, or has nothing to shed there
            i = portfolio.tiers.index(tier)
            allowed_before = [allowed_before[t] and (q[t] > 0 or known[t][i] <= EMPTY_KW)
                              for t in range(len(starts))]
            quantities[tier] = q
        for t, exp in enumerate(known):
            if exp is None:
                continue
            steps = tuple(SupplyStep(tier, prices[(loc, tier)], quantities[tier][t])
                          for tier in sheddable if (loc, tier) in prices)
            curves[(loc, t)] = LocationSupply(loc, t, starts[t], float(sum(exp)), float(exp[-1]), steps)
    return SupplyCurves(starts, float(interval_h), float(confidence), sheddable, curves, prices, limits,
                        offered, missing)


def _notice_ok(contract: TierContract, start_ms: int, dispatch_at_ms: int | None) -> bool:
    return dispatch_at_ms is None or start_ms - dispatch_at_ms >= contract.min_notice_min * 60_000


def _choose_per_day(starts, priority, eligible, contract: TierContract, interval_h: float) -> set[int]:
    by_day: dict[int, list[int]] = {}
    for t, s in enumerate(starts):
        by_day.setdefault(s // DAY_MS, []).append(t)
    chosen: set[int] = set()
    for idx in by_day.values():
        pick = choose_intervals([priority[t] for t in idx], [eligible[t] for t in idx],
                                contract.max_intervals_per_day(interval_h), contract.max_events_per_day)
        chosen.update(idx[i] for i in pick)
    return chosen


def feeder_supply(curves: SupplyCurves) -> dict[int, tuple[tuple[float, float], ...]]:
    """Per interval, the feeder's aggregated curve for the ISO: (price_usd_per_mwh, p_kw) steps of
    every location, cheapest first, equal prices merged, zero quantities left out."""
    out: dict[int, dict[float, float]] = {t: {} for t in range(len(curves.starts_ms))}
    for (_, t), curve in curves.curves.items():
        for s in curve.steps:
            if s.p_kw > 0:
                out[t][s.price_usd_per_mwh] = out[t].get(s.price_usd_per_mwh, 0.0) + s.p_kw
    return {t: tuple(sorted(steps.items())) for t, steps in out.items()}


def offer_id(location: str, tier: str) -> str:
    return f"{OFFER_PREFIX}/{location}/{tier}"


def parse_offer_id(resource: str) -> tuple[str, str] | None:
    """(location, tier) of a VPP offer id, None for any other resource."""
    parts = resource.split("/")
    if len(parts) != 3 or parts[0] != OFFER_PREFIX:
        return None
    return parts[1], parts[2]


def lem_offers(curves: SupplyCurves) -> list[dict]:
    """One LEM step offer per location·tier (generation-positive demand reduction): one step at the
    tier's price of its largest quantity, `p_max_kw[t]` the quantity of interval t (0 where it is
    not offered). Location·tiers never offered are left out."""
    offers = []
    for (loc, tier), price in sorted(curves.prices.items()):
        q = [curves.quantity_kw(loc, tier, t) for t in range(len(curves.starts_ms))]
        if max(q) <= 0:
            continue
        offers.append({"id": offer_id(loc, tier), "location": loc,
                       "steps": [{"price_usd_per_mwh": price, "p_kw": max(q)}], "p_max_kw": q})
    return offers


def with_vpp_offers(market: Mapping, curves: SupplyCurves) -> Market:
    """The market document `market` (a dict in the LEM schema) with the VPP's offers added, validated
    by `market.lem.schema.load_market` (MarketDataError names any bad field)."""
    doc = copy.deepcopy(dict(market))
    if doc.get("intervals") != len(curves.starts_ms):
        raise SupplyError(f"intervals: the market has {doc.get('intervals')!r}, the curves {len(curves.starts_ms)}")
    if not math.isclose(float(doc.get("interval_h", 1.0)), curves.interval_h):
        raise SupplyError(f"interval_h: the market has {doc.get('interval_h', 1.0)!r}, the curves {curves.interval_h}")
    doc["offers"] = list(doc.get("offers", [])) + lem_offers(curves)
    return load_market(doc)
