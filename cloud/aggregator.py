"""Gateway sessions and per-group aggregation: many gateway reports → one (k, 4) kW state per group.

Session rules (Sparkplug-B ideas, our own namespace; see docs/mqtt.md):

- A gateway's session starts with a birth carrying its birth/death counter `bd_seq` and sequence
  number `seq`; every later message of that session carries `seq` + 1 (mod 256).
- A state report whose `seq` is not the expected successor (a lost or reordered message), whose
  `bd_seq` differs from the session's, or that comes from a gateway with no known birth, is a
  *gap*: its data are still used (the next round supersedes them anyway) and a rebirth request is
  queued for that gateway (at most one per `rebirth_holdoff_ms`).
- A *retained* birth (delivered by the broker on subscription, e.g. to a restarted controller)
  may be many messages old: its session's sequence re-synchronises on the next report of the
  same `bd_seq` instead of restarting at 0, so a controller restart asks nobody for a rebirth.
- A death (Last Will) whose `bd_seq` matches the current session ends it; a death from an older
  session (a late Will after a reconnect) is ignored.
- The controller's own (re)connection (`resync(now_ms, grace_ms)`, called by the service on every
  connect): what the broker dropped while the controller was away are QoS-0 reports, which the
  next round supersedes, so every session re-synchronises on its next report instead of counting
  a gap; for `grace_ms` a birth (retained, or queued in the controller's persistent session) is
  handled like a retained one, and a report the controller cannot place yet (no birth, or a new
  `bd_seq`) defers its rebirth request to the end of the grace window — a birth arriving in the
  meantime (the broker's retained births follow the subscription) cancels it. So neither a broker
  restart nor a controller restart asks a gateway for a rebirth when nothing was lost.

Aggregation at controller time `now_ms`, per control group, over gateways in a live session:

    age = now_ms − (receive time of the gateway's last report)
    fresh    : age ≤ stale_after_ms                       → included
    carried  : stale_after_ms < age ≤ max_carry_ms        → last report carried forward, included
    missing  : age > max_carry_ms, or no report yet       → excluded
    X[i, s] = Σ_included report_kw[i, s]                (kW, s ∈ EF, ER, DF, DR)

`scale` = (capacity of every live gateway) / (capacity of the included ones), capacity being the
gateway's total reported kW (all tiers, all states) — the factor an estimator applies to stand in
for missing gateways. Optional sampling (`sample_fraction` < 1) includes only a stable subset of
gateways (CRC32 of the id) and relies on the same scale factor; `accepts_state(id)` lets the
service skip decoding reports of unsampled gateways.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any

import numpy as np

log = logging.getLogger("colorgrid.cloud.aggregator")


class AggregatorError(ValueError):
    """A report that cannot be aggregated (field named in the message)."""


class Session:
    """What the aggregator knows about one gateway."""

    __slots__ = ("gateway_id", "group", "bd_seq", "seq", "online", "k", "capacity_kw",
                 "report_kw", "report_counts", "report_rx_ms", "report_ts_ms", "births", "gaps")

    def __init__(self, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.group: str | None = None
        self.bd_seq: int | None = None
        self.seq: int | None = None
        self.online = False
        self.k: int | None = None
        self.capacity_kw = 0.0
        self.report_kw: np.ndarray | None = None
        self.report_counts: np.ndarray | None = None
        self.report_rx_ms: int | None = None
        self.report_ts_ms: int | None = None
        self.births = 0
        self.gaps = 0


class GroupSnapshot:
    """One group's aggregate at one instant (kW, columns EF, ER, DF, DR)."""

    __slots__ = ("group", "state_kw", "counts", "n_live", "n_fresh", "n_carried", "n_missing",
                 "n_sampled_out", "scale", "capacity_kw")

    def __init__(self, group: str, state_kw: np.ndarray, counts: np.ndarray, n_live: int, n_fresh: int,
                 n_carried: int, n_missing: int, n_sampled_out: int, scale: float, capacity_kw: float):
        self.group = group
        self.state_kw = state_kw
        self.counts = counts
        self.n_live = n_live
        self.n_fresh = n_fresh
        self.n_carried = n_carried
        self.n_missing = n_missing
        self.n_sampled_out = n_sampled_out
        self.scale = scale
        self.capacity_kw = capacity_kw

    @property
    def scaled_state_kw(self) -> np.ndarray:
        """state_kw × scale: the included gateways standing in for the whole live group."""
        return self.state_kw * self.scale


def _int_field(value: Any, field: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise AggregatorError(f"{field}: expected an int in {lo}..{hi}, got {value!r}")
    return value


def _tier_array(value: Any, field: str, k: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AggregatorError(f"{field}: not a numeric (k, 4) table") from exc
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 1:
        raise AggregatorError(f"{field}: expected shape (k, 4), got {arr.shape}")
    if k is not None and arr.shape[0] != k:
        raise AggregatorError(f"{field}: {arr.shape[0]} tiers, session birth declared {k}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise AggregatorError(f"{field}: values must be finite and >= 0")
    return arr


def sampled(gateway_id: str, fraction: float) -> bool:
    """Stable sampling: True for ≈ `fraction` of ids (CRC32 of the id, 1/10000 resolution)."""
    if fraction >= 1.0:
        return True
    return zlib.crc32(gateway_id.encode()) % 10_000 < int(round(fraction * 10_000))


class Aggregator:
    """Tracks gateway sessions and sums their latest reports per control group."""

    def __init__(self, stale_after_ms: int = 3_000, max_carry_ms: int = 10_000,
                 rebirth_holdoff_ms: int = 5_000, sample_fraction: float = 1.0) -> None:
        if not 0 < stale_after_ms <= max_carry_ms:
            raise AggregatorError("stale_after_ms: expected 0 < stale_after_ms <= max_carry_ms")
        if not 0.0 < sample_fraction <= 1.0:
            raise AggregatorError(f"sample_fraction: expected a value in (0, 1], got {sample_fraction!r}")
        self.stale_after_ms = stale_after_ms
        self.max_carry_ms = max_carry_ms
        self.rebirth_holdoff_ms = rebirth_holdoff_ms
        self.sample_fraction = sample_fraction
        self.sessions: dict[str, Session] = {}
        self._rebirth_due: dict[str, tuple[str, int]] = {}   # gateway -> (why, not before ms)
        self._rebirth_sent_ms: dict[str, int] = {}
        self._grace_until_ms: int | None = None   # resync(): births re-synchronise, gaps wait
        self.counters = {"births": 0, "deaths": 0, "stale_deaths": 0, "states": 0, "gaps": 0,
                         "rebirth_requests": 0}

    # ----------------------------------------------------------------------------- events
    def _session(self, gateway_id: str) -> Session:
        ses = self.sessions.get(gateway_id)
        if ses is None:
            ses = self.sessions[gateway_id] = Session(gateway_id)
        return ses

    def on_birth(self, gateway_id: str, group: str, bd_seq: int, seq: int, k: int,
                 capacity_kw: float, now_ms: int, retained: bool = False) -> Session:
        """Start (or restart) a session; clears any pending rebirth request for this gateway.

        `retained`: the broker delivered a stored birth on (re)subscription, so the session may
        have advanced since: the sequence is not reset to the birth's `seq` but re-synchronised on
        the session's next report (kept as it is when this session is already being tracked).
        A live birth (a rebirth, a reconnect) restarts the sequence at its `seq`."""
        _int_field(bd_seq, "bd_seq", 0, 255)
        _int_field(seq, "seq", 0, 255)
        _int_field(k, "k", 1, 16)
        if not isinstance(capacity_kw, (int, float)) or not capacity_kw >= 0:
            raise AggregatorError(f"capacity_kw: expected a number >= 0, got {capacity_kw!r}")
        ses = self._session(gateway_id)
        if ses.k is not None and ses.k != k:
            ses.report_kw = ses.report_counts = ses.report_rx_ms = None
        if retained or self.in_grace(now_ms):
            seq = ses.seq if (ses.online and ses.bd_seq == bd_seq) else None
        ses.group, ses.bd_seq, ses.seq, ses.k = group, bd_seq, seq, k
        ses.capacity_kw = float(capacity_kw)
        ses.online = True
        ses.births += 1
        self.counters["births"] += 1
        self._rebirth_due.pop(gateway_id, None)
        return ses

    def resume(self, gateway_id: str, group: str, bd_seq: int, k: int | None, capacity_kw: float) -> Session:
        """Re-create a live session from the registry after a controller restart: the next report
        of session `bd_seq` is accepted whatever its `seq` (the sequence re-synchronises on it)."""
        ses = self._session(gateway_id)
        ses.group, ses.bd_seq, ses.seq, ses.k = group, bd_seq, None, k
        ses.capacity_kw = float(capacity_kw)
        ses.online = True
        return ses

    def resync(self, now_ms: int, grace_ms: int) -> None:
        """The controller (re)connected at `now_ms`: every session re-synchronises its `seq` on
        its next report, and for `grace_ms` births re-synchronise too and gaps only defer their
        rebirth request (module docstring)."""
        for ses in self.sessions.values():
            ses.seq = None
        self._grace_until_ms = int(now_ms) + max(0, int(grace_ms))

    def in_grace(self, now_ms: int) -> bool:
        return self._grace_until_ms is not None and now_ms < self._grace_until_ms

    def on_death(self, gateway_id: str, bd_seq: int, now_ms: int) -> bool:
        """End the session if `bd_seq` matches it; returns False for a stale or unknown death."""
        _int_field(bd_seq, "bd_seq", 0, 255)
        ses = self.sessions.get(gateway_id)
        if ses is None or ses.bd_seq != bd_seq or not ses.online:
            self.counters["stale_deaths"] += 1
            return False
        ses.online = False
        ses.report_kw = ses.report_counts = ses.report_rx_ms = None
        self.counters["deaths"] += 1
        return True

    def on_state(self, gateway_id: str, bd_seq: int, seq: int, tier_kw: Any, tier_counts: Any,
                 ts_ms: int, now_ms: int) -> bool:
        """Record one state report. Returns True when it continued its session without a gap."""
        _int_field(bd_seq, "bd_seq", 0, 255)
        _int_field(seq, "seq", 0, 255)
        ses = self._session(gateway_id)
        kw = _tier_array(tier_kw, "tier_kw", ses.k)
        counts = _tier_array(tier_counts, "tier_counts", kw.shape[0]) if tier_counts is not None else None
        in_order = (ses.online and ses.bd_seq == bd_seq
                    and (ses.seq is None or seq == (ses.seq + 1) % 256))
        prev_seq, ses.seq = ses.seq, seq
        self.counters["states"] += 1
        if ses.group is None:  # never saw a birth: data unusable (no group), ask for one
            self._gap(ses, now_ms, "state before any birth")
            return False
        if not in_order:
            why = ("no live session" if not ses.online else
                   f"bd_seq {bd_seq} != session {ses.bd_seq}" if ses.bd_seq != bd_seq else
                   f"seq {seq} after {prev_seq}")
            self._gap(ses, now_ms, why)
            if not ses.online or ses.bd_seq != bd_seq:
                return False
        ses.report_kw, ses.report_counts = kw, counts
        ses.report_rx_ms, ses.report_ts_ms = now_ms, ts_ms
        if ses.k is None:
            ses.k = kw.shape[0]
        return in_order

    def _gap(self, ses: Session, now_ms: int, why: str) -> None:
        ses.gaps += 1
        self.counters["gaps"] += 1
        if self.in_grace(now_ms):   # the retained birth may still be on its way: ask later
            if ses.gateway_id not in self._rebirth_due:
                self._rebirth_sent_ms.pop(ses.gateway_id, None)
                self._rebirth_due[ses.gateway_id] = (why, int(self._grace_until_ms))
                log.info("gateway %s: %s right after (re)connecting; rebirth request deferred",
                         ses.gateway_id, why)
            return
        last = self._rebirth_sent_ms.get(ses.gateway_id)
        if last is None or now_ms - last >= self.rebirth_holdoff_ms:
            self._rebirth_due[ses.gateway_id] = (why, int(now_ms))
            self._rebirth_sent_ms[ses.gateway_id] = now_ms
            log.info("gateway %s: session gap (%s) -> rebirth request", ses.gateway_id, why)

    def drain_rebirths(self, now_ms: int | None = None) -> list[tuple[str, str]]:
        """Pending (gateway_id, reason) rebirth requests due at `now_ms` (None: all), sorted;
        those returned leave the queue. A deferred request (a gap in the grace window after a
        reconnect) whose gateway has since sent a birth was already cancelled by it."""
        due = sorted((gid, why) for gid, (why, at_ms) in self._rebirth_due.items()
                     if now_ms is None or at_ms <= now_ms)
        for gid, why in due:
            del self._rebirth_due[gid]
            if gid not in self._rebirth_sent_ms:      # a deferred one: no birth came in the grace
                self._rebirth_sent_ms[gid] = int(now_ms) if now_ms is not None else 0
                log.info("gateway %s: still %s after the grace -> rebirth request", gid, why)
        self.counters["rebirth_requests"] += len(due)
        return due

    def accepts_state(self, gateway_id: str) -> bool:
        """False when sampling leaves this gateway out (its report need not even be decoded)."""
        return sampled(gateway_id, self.sample_fraction)

    # ----------------------------------------------------------------------------- snapshot
    def groups(self) -> list[str]:
        return sorted({s.group for s in self.sessions.values() if s.group is not None and s.online})

    def snapshot(self, group: str, now_ms: int, k: int | None = None) -> GroupSnapshot:
        """Aggregate one group at `now_ms` (see module docstring for the rules)."""
        total = np.zeros((k or 1, 4)) if k else None
        counts = None
        n_live = n_fresh = n_carried = n_missing = n_out = 0
        cap_live = cap_in = 0.0
        for gid in sorted(self.sessions):
            ses = self.sessions[gid]
            if ses.group != group or not ses.online:
                continue
            n_live += 1
            cap = ses.capacity_kw if ses.capacity_kw > 0 else (
                float(ses.report_kw.sum()) if ses.report_kw is not None else 0.0)
            cap_live += cap
            if not sampled(gid, self.sample_fraction):
                n_out += 1
                continue
            if ses.report_kw is None or ses.report_rx_ms is None:
                n_missing += 1
                continue
            age = now_ms - ses.report_rx_ms
            if age > self.max_carry_ms:
                n_missing += 1
                continue
            if age > self.stale_after_ms:
                n_carried += 1
            else:
                n_fresh += 1
            if total is None:
                total = np.zeros_like(ses.report_kw)
            if ses.report_kw.shape != total.shape:
                log.warning("gateway %s: %d tiers, group %s has %d; report skipped",
                            gid, ses.report_kw.shape[0], group, total.shape[0])
                continue
            total += ses.report_kw
            if ses.report_counts is not None:
                counts = ses.report_counts.copy() if counts is None else counts + ses.report_counts
            cap_in += cap
        if total is None:
            total = np.zeros((1, 4))
        if counts is None:
            counts = np.zeros_like(total)
        scale = cap_live / cap_in if cap_in > 0 else 1.0
        return GroupSnapshot(group, total, counts, n_live, n_fresh, n_carried, n_missing, n_out,
                             scale, cap_live)
