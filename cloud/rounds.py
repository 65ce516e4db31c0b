"""The controller's logic without I/O: incoming messages → sessions, each round → signed vectors.

`ControllerCore` is what `cloud.service.ControllerService` drives over MQTT and what tests drive
directly (no broker, no clock):

    core.handle(topic, payload, now_ms)   -> list[(topic, payload, qos, retain)] to publish
    core.control_round(now_ms)            -> list[(topic, payload, qos, retain)] to publish

`handle` never raises on bad input: the reason is logged, counted in `rejected` (by reason) and
the message dropped. Each round, per control group (groups of live gateways plus `groups`):

    snapshot = aggregator.snapshot(group, now)       (kW, EF ER DF DR; stale/missing handled)
    record   = GroupRound.step(now, ...)             (cloud.round_step: estimate → goal →
                                                      control law → decision record)
    vector   = sign(group, round_id, p_on, p_off, issued=now, expires=now + ttl_ms)

The goal is any `cloud.goals.GoalSchedule`; its `source` is recorded per round. Dispatched goals
arrive on the dispatch topic and go to the `dispatches` inbox (a `cloud.dispatch.DispatchGoal`
is both the goal and the inbox).

Round ids are `issued_ts_ms // round_ms` (docs/mqtt.md), kept strictly increasing (at least the
previous id + 1) and above `registry.last_round_id()`: a controller restarted with or without a
registry never issues an id a gateway already saw, so its vectors are never taken for replays
(given a clock that does not run backwards). Every vector is logged in the registry before it is
published. Gateways report in every state how many vectors they rejected and the last reason
(`vec_rejected`, `vec_reject_reason`): the core logs each increase and counts it by reason in
`vectors_rejected_by_gateways`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from cloud.aggregator import Aggregator, AggregatorError, GroupSnapshot
from cloud.control_law import ControlParams
from cloud.dispatch import DispatchInbox
from cloud.enrollment import GatewayPolicy
from cloud.estimator import (EstimatorError, FleetEstimator, RefractoryError, RefractoryParams,
                             group_refractory)
from cloud.goals import GoalSchedule
from cloud.region import ALL_REGION_SUMS, RegionError, RegionView, parse_sum_topic
from cloud.registry import FakeRegistry, Registry
from cloud.round_step import GroupRound, RoundDecision
from edge_agent import codec, security, topics

log = logging.getLogger("colorgrid.cloud.controller")

Publish = tuple[str, bytes, int, bool]


class RoundRecord:
    """One group's round as the controller saw it (the demo/bench time series)."""

    __slots__ = ("round_id", "t_ms", "group", "goal_kw", "measured_kw", "tier_enabled_kw",
                 "state_kw", "p_on", "p_off", "saturated", "n_live", "n_fresh", "n_missing",
                 "n_fail_safe", "goal_source", "law_goal_kw", "ramped", "n_outliers", "outliers")

    def __init__(self, **kw: Any) -> None:
        for key in self.__slots__:
            setattr(self, key, kw[key])


class ControllerCore:
    def __init__(self, controller_id: str, goal: GoalSchedule, key_id: str, key: bytes,
                 registry: Registry | None = None, aggregator: Aggregator | None = None,
                 params: ControlParams | None = None, round_ms: int = 2_000, ttl_ms: int | None = None,
                 groups: list[str] | None = None,
                 estimator: Callable[[str, GroupSnapshot, int], np.ndarray] | None = None,
                 refractory: RefractoryParams | None = None, predict: bool = True,
                 keep_records: bool = True, dispatches: DispatchInbox | None = None,
                 policy: GatewayPolicy | None = None, regions: RegionView | None = None) -> None:
        codec.check_id(controller_id, "controller_id")
        self.regions = regions                     # set: region mode (cloud.region): region sums, not states
        self.controller_id = controller_id
        self.goal = goal
        self.dispatches = dispatches
        self.policy = policy if policy is not None else GatewayPolicy()
        self._inventory: dict[str, dict] = {}      # gateway -> devices, tier_w, capacity_w (birth)
        self._declared_kw: dict[str, float] = {}   # gateway -> kW its birth declared
        self._median_cache: dict[str, tuple[float, int]] = {}   # group -> (median kW, n); births/deaths clear
        self.outliers: set[str] = set()            # gateways counted at the outlier cap
        self.key_id, self.key = key_id, key
        self.registry = registry if registry is not None else FakeRegistry()
        self.aggregator = aggregator or Aggregator(stale_after_ms=int(1.5 * round_ms),
                                                   max_carry_ms=5 * round_ms)
        self.params = params or ControlParams(round_s=round_ms / 1000.0)
        self.round_ms = round_ms
        self.ttl_ms = ttl_ms if ttl_ms is not None else 3 * round_ms
        self.resync_grace_ms = max(5 * round_ms, 5_000)   # after a (re)connect: see on_connect
        self.groups = list(groups or [])
        self.estimator = estimator
        self.refractory = refractory          # None: each group's from its gateways' births
        self._birth_params: dict[str, dict] = {}
        self._est_refractory: dict[str, RefractoryParams] = {}
        self._refractory_cache: dict[str, RefractoryParams] = {}   # cleared at births/deaths
        self.predict = predict
        self.estimators: dict[str, FleetEstimator] = {}
        self._rounds: dict[str, GroupRound] = {}
        self.keep_records = keep_records
        self.round_id = self.registry.last_round_id()
        self.records: list[RoundRecord] = []
        self.rejected: dict[str, int] = {}
        self.vectors_rejected_by_gateways: dict[str, int] = {}   # reason class -> vectors
        self._vec_rejected_seen: dict[str, int] = {}              # gateway -> its last counter
        self.received = 0
        self.published = 0
        self.round_errors = 0
        self._fail_safe: dict[str, bool] = {}
        self._store_depth: dict[str, int] = {}      # gateway -> store-and-forward depth, last report
        self._last_round_ms: dict[str, int] = {}   # group -> last round that sent a vector
        self._live_capacity_kw: dict[str, float] = {}   # group -> live capacity at its last round
        self._dead_bd: dict[str, int] = {}
        self._txn = 0
        self.pending_txns: dict[str, str] = {}   # txn -> gateway id (request/response pairs)
        self.session_ms: int | None = None       # set by the first status (the first connect)
        self._online_status: bytes | None = None  # the last `online: true` we published (retained)
        self._status_reassert_ms: int | None = None
        self._status_pending = False
        self.status_reasserted = 0                # foreign retained statuses overwritten
        self.responses: dict[str, dict] = {}
        self._resume_from_registry()

    def gateway_status(self) -> dict[str, dict]:
        """Per gateway what the controller holds now (read by the portal's digital twin, from
        another thread: copies only): group, online, UTC ms its last report was received and
        stamped, and that report's fail-safe flag and store-and-forward depth."""
        fail_safe, depth = dict(self._fail_safe), dict(self._store_depth)
        return {gid: {"group": ses.group, "online": ses.online, "report_rx_ms": ses.report_rx_ms,
                      "report_ts_ms": ses.report_ts_ms, "fail_safe": bool(fail_safe.get(gid, False)),
                      "store_depth": depth.get(gid)}
                for gid, ses in list(self.aggregator.sessions.items())}

    # ------------------------------------------------------------------ start-up
    def _resume_from_registry(self) -> None:
        """Sessions of gateways the registry knows online: control continues at once after a
        restart; their next report re-synchronises `seq` (no rebirth storm)."""
        for rec in self.registry.gateways():
            if rec.online:
                inv = rec.inventory
                self.aggregator.resume(rec.gateway_id, rec.group, rec.bd_seq, int(inv.get("k", 0)) or None,
                                       float(inv.get("capacity_w", 0)) / 1000.0)
                self._inventory[rec.gateway_id] = {"devices": inv.get("devices"), "tier_w": inv.get("tier_w"),
                                                   "capacity_w": inv.get("capacity_w")}
                self._declared_kw[rec.gateway_id] = float(inv.get("capacity_w", 0)) / 1000.0
                if isinstance(inv.get("params"), dict):
                    self._birth_params[rec.gateway_id] = inv["params"]

    def on_connect(self, now_ms: int) -> None:
        """The service (re)connected to the broker (before it subscribes): the QoS-0 reports the
        broker dropped while we were away are superseded by the next ones, so sessions
        re-synchronise on their next report, and for `resync_grace_ms` a gap only defers its
        rebirth request (the retained births follow the subscription): `Aggregator.resync`."""
        self.aggregator.resync(now_ms, self.resync_grace_ms)

    # ------------------------------------------------------------------ messages
    def _reject(self, topic: Any, reason: str) -> list[Publish]:
        key = ":".join(reason.split(":")[:2])[:80]   # "kind: field" — the reason class
        self.rejected[key] = self.rejected.get(key, 0) + 1
        log.warning("rejected message on %r: %s", topic, reason)
        return []

    def handle(self, topic: Any, payload: Any, now_ms: int, retained: bool = False) -> list[Publish]:
        """Process one incoming message; never raises (bad input is logged and counted).
        `retained`: the broker's retain flag (a stored message delivered on subscription)."""
        self.received += 1
        if self.regions is not None:
            try:
                in_region_tree = parse_sum_topic(topic) is not None
            except RegionError as exc:
                return self._reject(topic, f"region_sum: {exc}")
            if in_region_tree:
                return self._region_sum(topic, payload, now_ms)
        try:
            where, name, kind = topics.parse(topic)
        except topics.TopicError as exc:
            return self._reject(topic, f"topic: {exc}")
        if where == "dispatch":
            return self._dispatch(topic, name, payload, now_ms)
        if where == "status":
            return self._status_seen(payload, now_ms)
        if where != "gw":
            return []  # our own status / vectors echoed back: nothing to do
        if kind == "state" and not self.aggregator.accepts_state(name):
            return []
        if kind == "state" and self.regions is not None and self.regions.map.region_of(name) is not None:
            return []   # region mode: this gateway is counted through its region's sum
        try:
            _, gid, msg = codec.decode(topic, payload)
            reason = self.policy.check_message(kind, gid, msg)
            if not reason and kind == "birth":
                reason = self.policy.check_birth(gid, msg)
            if not reason and kind == "state":
                reason = self.policy.check_state(msg, self._inventory.get(gid))
            if reason:
                return self._reject(topic, f"{kind}: {reason}")
            if kind == "birth":
                self._birth(gid, msg, now_ms, retained)
            elif kind == "death":
                self._death(gid, msg, now_ms)
            elif kind == "state":
                self._state(gid, msg, now_ms)
            else:
                self._response(gid, msg)
        except (codec.CodecError, AggregatorError, ValueError) as exc:
            return self._reject(topic, f"{kind}: {exc}")
        return self._rebirth_commands(now_ms)

    def _dispatch(self, topic: Any, group: str, payload: Any, now_ms: int) -> list[Publish]:
        if self.dispatches is None:
            return self._reject(topic, "dispatch: this controller does not take dispatched goals")
        reason = self.dispatches.offer(group, payload, now_ms)
        if reason:
            return self._reject(topic, f"dispatch: {reason}")
        log.info("dispatch accepted for group %s", group)
        return []

    def _birth(self, gid: str, msg: dict, now_ms: int, retained: bool = False) -> None:
        capacity_w = sum(sum(dev["tier_w"]) for dev in msg["devices"])
        k = len(msg["tiers"])
        self.aggregator.on_birth(gid, msg["group"], msg["bd_seq"], msg["seq"], k, capacity_w / 1000.0, now_ms,
                                 retained=retained)
        # a retained birth whose retained Will was already read is not live; a live birth is (a
        # restarted gateway process counts bd_seq from 0 again: the Will of its previous process
        # may carry the same bd_seq)
        if retained and self._dead_bd.get(gid) == msg["bd_seq"]:
            self.aggregator.on_death(gid, msg["bd_seq"], now_ms)
        self._birth_params[gid] = msg["params"]
        self._refractory_cache.clear()
        self._median_cache.clear()
        tier_w = [sum(dev["tier_w"][t] for dev in msg["devices"]) for t in range(k)]
        self._inventory[gid] = {"devices": len(msg["devices"]), "tier_w": tier_w, "capacity_w": capacity_w}
        self._declared_kw[gid] = capacity_w / 1000.0
        inventory = {"devices": len(msg["devices"]), "k": k, "tiers": msg["tiers"], "tier_w": tier_w,
                     "capacity_w": capacity_w, "params": msg["params"]}
        self.registry.record_birth(gid, msg["group"], msg["bd_seq"], inventory, msg["ts_ms"])
        if not retained:
            self._dead_bd.pop(gid, None)

    def _death(self, gid: str, msg: dict, now_ms: int) -> None:
        self._dead_bd[gid] = msg["bd_seq"]
        self._refractory_cache.clear()
        self._median_cache.clear()
        self._fail_safe.pop(gid, None)
        self._store_depth.pop(gid, None)
        for est in self.estimators.values():
            est.forget(gid)
        if self.aggregator.on_death(gid, msg["bd_seq"], now_ms):
            self.registry.record_death(gid, msg["bd_seq"], msg["ts_ms"])

    def _group_median_kw(self, group: str) -> tuple[float, int]:
        hit = self._median_cache.get(group)
        if hit is None:
            caps = [self._declared_kw[gid] for gid, s in self.aggregator.sessions.items()
                    if s.group == group and s.online and gid in self._declared_kw]
            hit = self._median_cache[group] = (float(np.median(caps)) if caps else 0.0, len(caps))
        return hit

    def _outlier_scale(self, gid: str) -> float:
        """1, or the factor that brings an outlier gateway down to its group's cap (its session
        capacity is set to the cap too, so the scaling for missing gateways stays consistent)."""
        ses = self.aggregator.sessions.get(gid)
        declared = self._declared_kw.get(gid)
        if ses is None or ses.group is None or not ses.online or not declared:
            return 1.0
        median, n = self._group_median_kw(ses.group)
        cap = self.policy.outlier_cap_kw(gid, declared, median, n)
        if cap is None:
            if gid in self.outliers:
                self.outliers.discard(gid)
                ses.capacity_kw = declared
            return 1.0
        if gid not in self.outliers:
            self.outliers.add(gid)
            log.warning("gateway %s declares %g kW, over %g x the median of group %s (%g kW): "
                        "counted as %g kW", gid, declared, self.policy.outlier_factor, ses.group, median, cap)
        ses.capacity_kw = cap
        return cap / declared

    def _state(self, gid: str, msg: dict, now_ms: int) -> None:
        kw = np.asarray(msg["p_w"], dtype=float) / 1000.0 * self._outlier_scale(gid)
        self.aggregator.on_state(gid, msg["bd_seq"], msg["seq"], kw, msg["count"], msg["ts_ms"], now_ms)
        self._fail_safe[gid] = msg["fail_safe"]
        self._store_depth[gid] = msg["store_depth"]
        if "vec_rejected" in msg:
            self._gateway_rejections(gid, msg["vec_rejected"], msg.get("vec_reject_reason", ""))
        group = self.aggregator.sessions[gid].group
        if group is not None and self.aggregator.sessions[gid].online:
            self._feed_estimator(group, gid, kw, msg["ts_ms"], now_ms)

    def _feed_estimator(self, group: str, source: str, kw: np.ndarray, ts_ms: int, now_ms: int) -> None:
        """One source's report (a gateway, or a region's merged sum) into the group's estimator."""
        est = self.estimators.get(group)
        refr = self.group_refractory(group)
        if est is None or est.k != kw.shape[0] or self._est_refractory.get(group) != refr:
            est = self.estimators[group] = FleetEstimator(
                kw.shape[0], round_s=self.round_ms / 1000.0,
                max_age_s=self.aggregator.max_carry_ms / 1000.0, refractory=refr)
            self._est_refractory[group] = refr
        # stamp = the round boundary before the gateway's step: the vector issued at that
        # boundary is the one this report's switching used (see estimate())
        stamp = (min(ts_ms, now_ms) // self.round_ms) * self.round_ms
        est.update_one(source, kw, stamp)

    # ------------------------------------------------------------------ region mode
    def subscriptions(self) -> list[str]:
        """Topic filters the service subscribes to (QoS 1). Region mode reads no gateway state:
        births, deaths and responses (sessions, inventory, commands) and the region sums."""
        if self.regions is None:
            return [topics.ALL_GATEWAYS, topics.ALL_DISPATCH]
        return [topics.ALL_BIRTHS, topics.ALL_DEATHS, topics.ALL_RESPS, topics.ALL_DISPATCH, ALL_REGION_SUMS]

    def _region_sum(self, topic: Any, payload: Any, now_ms: int) -> list[Publish]:
        """A signed (partial) region sum: merged with the round's other partials, scaled to the
        region's live capacity of the group and fed to the estimator as source `region:{R}`."""
        reason, merged = self.regions.inbox.offer(topic, payload, now_ms)
        if reason:
            return self._reject(topic, f"region_sum: {reason}")
        sessions = self.aggregator.sessions
        for gid in merged.covered:
            if gid in sessions:
                self._fail_safe[gid] = gid in merged.fail_safe
        kw = merged.state_kw * self.regions.region_scale(merged, sessions)
        self._feed_estimator(merged.group, f"region:{merged.region}", kw, merged.ts_ms, now_ms)
        return []

    def _snapshot(self, group: str, now_ms: int) -> GroupSnapshot:
        if self.regions is None:
            return self.aggregator.snapshot(group, now_ms)
        return self.regions.snapshot(group, now_ms, self.aggregator.sessions,
                                     self.aggregator.stale_after_ms, self.aggregator.max_carry_ms)

    def _gateway_rejections(self, gid: str, count: int, reason: str) -> None:
        """A gateway's cumulative count of rejected vectors: the first one seen is the baseline
        (rejections before this controller started), a smaller one means the agent restarted."""
        prev = self._vec_rejected_seen.get(gid)
        self._vec_rejected_seen[gid] = count
        if prev is None:
            return
        new = count - prev if count >= prev else count
        if new <= 0:
            return
        cls = reason.split(" (")[0].split(":")[0].strip()[:40] or "unknown"
        self.vectors_rejected_by_gateways[cls] = self.vectors_rejected_by_gateways.get(cls, 0) + new
        log.warning("gateway %s rejected %d vector(s) (%d in all): %s", gid, new, count, reason)

    def group_refractory(self, group: str) -> RefractoryParams:
        """The refractory timing the group's estimator models: the override given to the core,
        else the most common set its live gateways announced in their births."""
        if self.refractory is not None:
            return self.refractory
        if group in self._refractory_cache:
            return self._refractory_cache[group]
        params = [self._birth_params[gid] for gid, s in sorted(self.aggregator.sessions.items())
                  if s.group == group and s.online and gid in self._birth_params]
        try:
            refr = group_refractory(params)
        except RefractoryError as exc:
            log.warning("group %s: %s; modelling the default refractory timing", group, exc)
            refr = RefractoryParams()
        self._refractory_cache[group] = refr
        return refr

    def request(self, gateway_id: str, cmd: str, now_ms: int, params: dict | None = None,
                ttl_ms: int = 30_000) -> tuple[str, Publish]:
        """A signed command (rebirth | config_get | config_set) for one gateway: returns its
        transaction id and the message to publish; the answer lands in `responses[txn]`."""
        codec.check_id(gateway_id, "gateway_id")
        self._txn += 1
        txn = f"{self.controller_id}-{now_ms}-{self._txn}"[-64:]
        payload = security.make_cmd(txn, cmd, now_ms, ttl_ms, self.key_id, self.key, params)
        self.pending_txns[txn] = gateway_id
        return txn, (topics.cmd(gateway_id), payload, 1, False)

    def _response(self, gid: str, msg: dict) -> None:
        txn = msg["txn"]
        if self.pending_txns.get(txn) != gid:
            raise codec.CodecError("txn", f"no request {txn!r} pending for {gid}")
        del self.pending_txns[txn]
        self.responses[txn] = msg
        log.info("gateway %s answered txn %s ok=%s %s", gid, txn, msg["ok"], msg["error"])

    def _rebirth_commands(self, now_ms: int) -> list[Publish]:
        out = []
        for gid, _why in self.aggregator.drain_rebirths(now_ms):
            _, item = self.request(gid, "rebirth", now_ms)
            out.append(item)
        return out

    # ------------------------------------------------------------------ rounds
    def group_list(self) -> list[str]:
        return sorted(set(self.groups) | set(self.aggregator.groups()))

    def _round_step(self, group: str) -> GroupRound:
        step = self._rounds.get(group)
        if step is None:
            step = self._rounds[group] = GroupRound(group, self.goal, self.params, predict=self.predict)
        step.estimator = self.estimators.get(group)
        return step

    def _sampling_scale(self, group: str, snap: GroupSnapshot) -> float:
        """Capacity of the group over that of its sampled gateways (1 without sampling)."""
        if not snap.n_sampled_out:
            return 1.0
        sampled_cap = sum(s.capacity_kw for s in self.aggregator.sessions.values()
                          if s.group == group and s.online and self.aggregator.accepts_state(s.gateway_id))
        return snap.capacity_kw / sampled_cap if sampled_cap > 0 else 1.0

    def decide(self, group: str, snap: GroupSnapshot, now_ms: int) -> RoundDecision:
        """The group's round step at the switching instant of this round (the gateways' next
        step): the estimator's one-round-ahead prediction from each gateway's last report
        (carried forward, scaled for missing and sampled-out gateways), the scaled snapshot when
        the prediction is off or impossible, or the `estimator` override's state."""
        given = self.estimator(group, snap, now_ms) if self.estimator is not None else None
        fresh = snap.n_live > 0 and snap.n_fresh + snap.n_sampled_out == snap.n_live
        return self._round_step(group).step(now_ms, now_ms, fallback_kw=snap.scaled_state_kw,
                                            scale=self._sampling_scale(group, snap), state_kw=given,
                                            fresh=fresh)

    def control_round(self, now_ms: int) -> list[Publish]:
        """One control round for every group; returns the signed vectors to publish (QoS 1)."""
        out = self._rebirth_commands(now_ms)
        if self._status_pending:
            out.append(self._reassert_status(now_ms))
        self.round_id = max(self.round_id + 1, int(now_ms) // self.round_ms)
        for group in self.group_list():
            try:
                out.extend(self._group_round(group, now_ms))
            except (ValueError, ArithmeticError, EstimatorError) as exc:  # one bad group never stops the others
                # (GoalError is a ValueError: a group without a goal gets no vector this round)
                self.round_errors += 1
                log.error("round %d group %s: %s; no vector this round", self.round_id, group, exc)
        self.published += len(out)
        return out

    def _group_round(self, group: str, now_ms: int) -> list[Publish]:
        snap = self._snapshot(group, now_ms)
        if snap.n_fresh + snap.n_carried == 0:
            log.info("round %d group %s: no reports, no vector", self.round_id, group)
            return []
        self._check_recovery(group, snap, now_ms)
        rec = self.decide(group, snap, now_ms)
        self._last_round_ms[group] = now_ms
        decision = rec.decision
        payload = security.make_vector(group, self.round_id, decision.p_on.tolist(),
                                       decision.p_off.tolist(), now_ms, self.ttl_ms,
                                       self.key_id, self.key)
        self.registry.log_command(self.round_id, group, now_ms, now_ms + self.ttl_ms, payload.decode())
        if self.keep_records:
            self.records.append(self._record(snap, rec))
        return [(topics.vector(group), payload, 1, False)]

    def _check_recovery(self, group: str, snap: GroupSnapshot, now_ms: int) -> None:
        """Start the group's recovery ramp (cloud.round_step) when control was interrupted (no
        vector for longer than a vector lives: the gateways held or went fail-safe), when the
        group's live capacity changed by more than one ramp step since its last round (a gateway
        died or was born: the others would otherwise take up its share of the goal in one round)
        or when gateways holding more than one ramp step of the group's capacity report fail-safe
        (all their demand came back)."""
        step = self._round_step(group)
        last = self._last_round_ms.get(group)
        if last is not None and now_ms - last > self.ttl_ms:
            step.recover(f"no vector for {(now_ms - last) / 1000.0:g} s")
            return
        if snap.capacity_kw <= 0:
            return
        before_kw = self._live_capacity_kw.get(group)
        self._live_capacity_kw[group] = snap.capacity_kw
        if before_kw is not None and abs(snap.capacity_kw - before_kw) > self.params.ramp_share_per_round * before_kw:
            # a gateway died or came (back): the rest of the group must not take up its share at once
            step.recover(f"live capacity {before_kw:g} -> {snap.capacity_kw:g} kW")
            return
        fs_kw = sum(s.capacity_kw for gid, s in self.aggregator.sessions.items()
                    if s.group == group and s.online and self._fail_safe.get(gid))
        if fs_kw > self.params.ramp_share_per_round * snap.capacity_kw:
            step.recover(f"{fs_kw:g} of {snap.capacity_kw:g} kW back from fail-safe")

    def _record(self, snap: GroupSnapshot, rec: RoundDecision) -> RoundRecord:
        fail_safe = sum(1 for gid, fs in self._fail_safe.items()
                        if fs and self.aggregator.sessions[gid].group == rec.group)
        enabled = snap.state_kw[:, 0] + snap.state_kw[:, 1]
        outliers = sorted(gid for gid in self.outliers if gid in self.aggregator.sessions
                          and self.aggregator.sessions[gid].group == rec.group)
        d = rec.decision
        return RoundRecord(round_id=self.round_id, t_ms=rec.t_ms, group=rec.group, goal_kw=rec.goal.kw,
                           measured_kw=float(enabled.sum()), tier_enabled_kw=enabled.tolist(),
                           state_kw=np.asarray(rec.state_kw).tolist(), p_on=d.p_on.tolist(),
                           p_off=d.p_off.tolist(), saturated=bool(d.saturated),
                           n_live=snap.n_live, n_fresh=snap.n_fresh, n_missing=snap.n_missing,
                           n_fail_safe=fail_safe, goal_source=rec.goal.source,
                           law_goal_kw=rec.law_goal_kw, ramped=rec.ramped,
                           n_outliers=len(outliers), outliers=outliers)

    def status_payload(self, online: bool, now_ms: int) -> bytes:
        """Signed retained status; `session_ms` (this core's start) orders controller restarts.
        An `online: true` payload is remembered as what the retained status must hold."""
        if self.session_ms is None:
            self.session_ms = now_ms
        payload = security.make_status(self.controller_id, online, now_ms, self.session_ms,
                                       self.key_id, self.key)
        if online:
            self._online_status = payload
        return payload

    def _status_seen(self, payload: Any, now_ms: int) -> list[Publish]:
        """The retained status topic must hold our own `online: true` while we run. Anything else
        (a forged status, a replay of our own signed Will, another client's message: possible on
        a broker without ACLs) is overwritten by a fresh signed online status — at once, then at
        most once per round (the rest is folded into the next `control_round`), so two
        controllers misconfigured onto one broker cannot ping-pong at wire speed."""
        if self._online_status is None or bytes(payload) == self._online_status:
            return []                                   # not online yet, or our own echo
        log.warning("foreign controller status on the retained topic (%d bytes); re-asserting ours",
                    len(payload))
        if self._status_reassert_ms is not None and now_ms - self._status_reassert_ms < self.round_ms:
            self._status_pending = True
            return []
        return [self._reassert_status(now_ms)]

    def _reassert_status(self, now_ms: int) -> Publish:
        self._status_pending = False
        self._status_reassert_ms = now_ms
        self.status_reasserted += 1
        return (topics.controller_status(), self.status_payload(True, now_ms), 1, True)
