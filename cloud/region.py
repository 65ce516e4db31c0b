"""Regional pre-aggregation (the aggregation tree, issue 19), without I/O.

    gateways ──state──► regional aggregator(s) ──one signed sum per round·group──► controller

Three pieces, each usable without a broker:

- `RegionMap`: which gateways belong to which region — an explicit gateway list wins, then the
  longest matching id prefix (`gw-n` covers `gw-n-00001`); no match: no region.
- `RegionCore`: one aggregator process of one region. It tracks its gateways' sessions (births,
  deaths, `bd_seq`), checks their messages with the controller's `GatewayPolicy` (enrollment,
  signatures, declared limits), and at each of its ticks returns one signed *region sum* per
  control group: the integer-watt sums of the reports it received in the window since its
  previous tick.
- `RegionInbox`: the controller's side. It verifies region sums (HMAC-SHA256 with the region
  keys), keeps the partial sums of the last rounds per (region, group, round) and merges them.

Topic: ``colorgrid/v1/region/{region}/{group}/sum`` (QoS 1, not retained). Payload (sorted JSON,
`codec.dumps`; W integers; lists sorted):

    v, region, group, aggregator_id, round (window index = boundary // round_ms),
    ts_ms (newest included report's ts_ms), oldest_ts_ms, issued_ts_ms (publish time),
    shared (bool), p_w [[EF, ER, DF, DR] W × k], count [[... ] × k], capacity_w,
    covered [gateway ids included], stale [ids carried forward], missing [ids not heard],
    fail_safe [ids in fail-safe], key_id, sig

**Exclusive mode** (`shared = False`, one aggregator per region, plain subscription): a gateway
not heard in the window is carried forward up to `max_carry_ms` after its last report (listed in
`stale`), beyond that it is listed in `missing`.

**Shared mode** (`shared = True`, several aggregators per region on the MQTT 5 shared
subscription ``$share/{region}/colorgrid/v1/gw/+/state``): the broker hands each state report to
exactly one member of the share group, so each aggregator sums only the reports it received in
its window — never a carried one (a peer may hold a newer report of the same gateway), and only
a report produced after this aggregator's previous tick (`ts_ms` > that tick's time): a report
that missed its round's tick arrives in the next window, where a peer may also hold the same
gateway's on-time report of that round, so counting it would make two partials of one round
claim the gateway (seen under load: the controller then had to leave a whole partial out). The
partial sums of one round thus cover disjoint gateways; a late report is dropped
(`counters["late"]`) and its gateway is missing for one round. `stale` and `missing` stay empty (an
aggregator cannot tell a gateway it did not hear from one its peer heard); the controller derives
them from the union. Births and deaths are read on a plain subscription by every member, so each
knows the whole region's inventory.

**Merging** (`RegionInbox.merged`): partials of (region, group, round) are summed, largest
`covered` first; a partial whose `covered` overlaps gateways already merged is left out (counted
in `overlaps`: two aggregators claim a gateway — a misconfiguration, never a double count). A
later partial of the same aggregator and round replaces the earlier (QoS 1 re-delivery is
idempotent). The controller scales the merged sum by (capacity of the region's live gateways of
the group) / (capacity of the covered ones), the capacities from the births it validated itself:
a missing partial or gateway lowers precision, not the level.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cloud.enrollment import GatewayPolicy
from edge_agent import codec, security, topics

log = logging.getLogger("colorgrid.cloud.region")

REGION_PREFIX = topics.NAMESPACE + "/region/"
ALL_REGION_SUMS = REGION_PREFIX + "+/+/sum"
MAX_IDS = 4096                 # gateway ids per list of one region sum (256 KiB payload cap)
KEEP_ROUNDS = 4                # partial sums kept per (region, group), newest rounds
MAX_SKEW_MS = 5_000            # issued_ts_ms at most this far in the receiver's future

Publish = tuple[str, bytes, int, bool]


class RegionError(ValueError):
    """A region configuration or region sum that cannot be used (message names the field)."""


def sum_topic(region: str, group: str) -> str:
    """``colorgrid/v1/region/{region}/{group}/sum``."""
    return (REGION_PREFIX + topics.check_id(region, "region") + "/"
            + topics.check_id(group, "group") + "/sum")


def parse_sum_topic(topic: Any) -> tuple[str, str] | None:
    """(region, group) of a region-sum topic; None for a topic outside ``colorgrid/v1/region/``;
    RegionError for a malformed one inside it."""
    if isinstance(topic, (bytes, bytearray)):
        topic = bytes(topic).decode("utf-8", "replace")
    if not isinstance(topic, str) or not topic.startswith(REGION_PREFIX):
        return None
    parts = topic[len(REGION_PREFIX):].split("/")
    if len(parts) != 3 or parts[2] != "sum" or not topics.valid_id(parts[0]) or not topics.valid_id(parts[1]):
        raise RegionError(f"topic: not a region sum topic: {topic!r}")
    return parts[0], parts[1]


def shared_state_filter(share_group: str) -> str:
    """``$share/{share_group}/colorgrid/v1/gw/+/state`` (MQTT 5 shared subscription)."""
    return "$share/" + topics.check_id(share_group, "share_group") + "/" + topics.ALL_STATES


# ---------------------------------------------------------------------------- membership
class RegionMap:
    """Region membership: {region: {"prefixes": [...], "gateways": [...]}} (module docstring)."""

    def __init__(self, regions: dict[str, dict]) -> None:
        if not isinstance(regions, dict) or not regions:
            raise RegionError("regions: expected a non-empty object {region: {prefixes, gateways}}")
        self._gateways: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        for region in sorted(regions):
            if not topics.valid_id(region):
                raise RegionError(f"regions: invalid region id {region!r} (1..64 chars of A-Z a-z 0-9 _ . -)")
            spec = regions[region]
            if not isinstance(spec, dict) or set(spec) - {"prefixes", "gateways"}:
                raise RegionError(f"regions.{region}: expected {{\"prefixes\": [...], \"gateways\": [...]}}")
            for field in ("prefixes", "gateways"):
                values = spec.get(field, [])
                if not isinstance(values, list):
                    raise RegionError(f"regions.{region}.{field}: expected a list")
                for i, value in enumerate(values):
                    if not topics.valid_id(value):
                        raise RegionError(f"regions.{region}.{field}[{i}]: invalid id {value!r}")
                    if field == "gateways":
                        if value in self._gateways:
                            raise RegionError(f"regions.{region}.gateways[{i}]: {value} already in "
                                              f"region {self._gateways[value]}")
                        self._gateways[value] = region
                    else:
                        if any(p == value for p, _ in self._prefixes):
                            raise RegionError(f"regions.{region}.prefixes[{i}]: prefix {value!r} given twice")
                        self._prefixes.append((value, region))
            if not spec.get("prefixes") and not spec.get("gateways"):
                raise RegionError(f"regions.{region}: no prefixes and no gateways")
        self._prefixes.sort(key=lambda pr: (-len(pr[0]), pr[0]))    # longest prefix first
        self.regions = sorted(regions)

    @classmethod
    def from_file(cls, path: str | Path, flag: str = "--regions") -> "RegionMap":
        """JSON ``{"regions": {R: {"prefixes": [...], "gateways": [...]}}}``."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise RegionError(f"{flag}: {path}: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != {"regions"}:
            raise RegionError(f"{flag}: {path}: expected {{\"regions\": {{...}}}}")
        try:
            return cls(doc["regions"])
        except RegionError as exc:
            raise RegionError(f"{flag}: {path}: {exc}") from None

    def region_of(self, gateway_id: str) -> str | None:
        hit = self._gateways.get(gateway_id)
        if hit is not None:
            return hit
        for prefix, region in self._prefixes:
            if gateway_id.startswith(prefix):
                return region
        return None


# ---------------------------------------------------------------------------- wire format
_SUM_KEYS = ("v", "region", "group", "aggregator_id", "round", "ts_ms", "oldest_ts_ms", "issued_ts_ms",
             "shared", "p_w", "count", "capacity_w", "covered", "stale", "missing", "fail_safe",
             "key_id", "sig")


def make_region_sum(region: str, group: str, aggregator_id: str, round_index: int, ts_ms: int,
                    oldest_ts_ms: int, issued_ts_ms: int, shared: bool, p_w, count, capacity_w: int,
                    covered, stale, missing, fail_safe, key_id: str, key: bytes) -> bytes:
    """Encode and sign one region sum (fields: module docstring)."""
    msg = {"v": codec.SCHEMA_VERSION, "region": region, "group": group, "aggregator_id": aggregator_id,
           "round": int(round_index), "ts_ms": int(ts_ms), "oldest_ts_ms": int(oldest_ts_ms),
           "issued_ts_ms": int(issued_ts_ms), "shared": bool(shared),
           "p_w": [[int(x) for x in row] for row in p_w], "count": [[int(x) for x in row] for row in count],
           "capacity_w": int(capacity_w), "covered": sorted(covered), "stale": sorted(stale),
           "missing": sorted(missing), "fail_safe": sorted(fail_safe), "key_id": key_id}
    check_region_sum(dict(msg, sig="0" * 64))
    return codec.dumps(security.sign(msg, key))


def _ids(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_IDS:
        raise RegionError(f"{field}: expected a list of at most {MAX_IDS} gateway ids")
    for i, gid in enumerate(value):
        if not topics.valid_id(gid):
            raise RegionError(f"{field}[{i}]: invalid gateway id {gid!r}")
    if len(set(value)) != len(value):
        raise RegionError(f"{field}: duplicate gateway id")
    return value


def check_region_sum(msg: Any) -> dict:
    """Field checks of a decoded region sum (RegionError naming the first bad field)."""
    if not isinstance(msg, dict):
        raise RegionError("payload: expected an object")
    for key in _SUM_KEYS:
        if key not in msg:
            raise RegionError(f"{key}: missing")
    for key in msg:
        if key not in _SUM_KEYS:
            raise RegionError(f"{key}: unknown field")
    try:
        if msg["v"] != codec.SCHEMA_VERSION:
            raise RegionError(f"v: expected {codec.SCHEMA_VERSION}, got {msg['v']!r}")
        for key in ("region", "group", "aggregator_id", "key_id"):
            codec.check_id(msg[key], key)
        for key in ("round",):
            codec.check_int(msg[key], key, 0, 2 ** 53)
        for key in ("ts_ms", "oldest_ts_ms", "issued_ts_ms"):
            codec.check_ts(msg[key], key)
        codec.check_bool(msg["shared"], "shared")
        codec.check_int(msg["capacity_w"], "capacity_w", 0, 2 ** 53)
        codec.check_sig(msg)
    except codec.CodecError as exc:
        raise RegionError(str(exc)) from None
    for key in ("p_w", "count"):
        table = msg[key]
        if not isinstance(table, list) or not 1 <= len(table) <= 16:
            raise RegionError(f"{key}: expected 1..16 tiers")
        for t, row in enumerate(table):
            if not isinstance(row, list) or len(row) != 4:
                raise RegionError(f"{key}[{t}]: expected 4 states EF, ER, DF, DR")
            for s, x in enumerate(row):
                if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= 2 ** 53:
                    raise RegionError(f"{key}[{t}][{s}]: expected an int >= 0")
    if len(msg["count"]) != len(msg["p_w"]):
        raise RegionError("count: tiers differ from p_w")
    if msg["oldest_ts_ms"] > msg["ts_ms"]:
        raise RegionError("oldest_ts_ms: after ts_ms")
    covered = set(_ids(msg["covered"], "covered"))
    for key in ("stale", "missing", "fail_safe"):
        _ids(msg[key], key)
    if not set(msg["stale"]) <= covered:
        raise RegionError("stale: lists a gateway not in covered")
    if not set(msg["fail_safe"]) <= covered:
        raise RegionError("fail_safe: lists a gateway not in covered")
    if covered & set(msg["missing"]):
        raise RegionError("missing: lists a covered gateway")
    if msg["shared"] and (msg["stale"] or msg["missing"]):
        raise RegionError("shared: a shared-subscription partial carries no stale or missing gateways")
    return msg


def decode_region_sum(topic: Any, payload: Any, keys: dict[str, bytes]) -> dict:
    """Parse, check, verify (HMAC-SHA256 under `keys[key_id]`) and match to the topic."""
    where = parse_sum_topic(topic)
    if where is None:
        raise RegionError(f"topic: not a region sum topic: {topic!r}")
    try:
        msg = codec.loads(payload)
    except codec.CodecError as exc:
        raise RegionError(str(exc)) from None
    check_region_sum(msg)
    reason = security.verify(msg, keys)
    if reason:
        raise RegionError(f"sig: {reason}")
    if (msg["region"], msg["group"]) != where:
        raise RegionError(f"region: ({msg['region']}, {msg['group']}) does not match topic {where}")
    return msg


# ---------------------------------------------------------------------------- aggregator core
class _Gateway:
    __slots__ = ("group", "bd_seq", "online", "capacity_w", "inventory", "p_w", "count", "ts_ms",
                 "rx_ms", "fail_safe", "fresh")

    def __init__(self) -> None:
        self.group: str | None = None
        self.bd_seq: int | None = None
        self.online = False
        self.capacity_w = 0
        self.inventory: dict | None = None
        self.p_w: list | None = None
        self.count: list | None = None
        self.ts_ms = self.rx_ms = 0
        self.fail_safe = False
        self.fresh = False          # a report arrived since the last tick


class RegionCore:
    """One regional aggregator (module docstring): `handle` every gateway message it receives,
    `tick(boundary_ms, now_ms)` once per round → the signed region sums to publish."""

    def __init__(self, region: str, region_map: RegionMap, aggregator_id: str, key_id: str, key: bytes,
                 round_ms: int = 2_000, shared: bool = False, max_carry_ms: int | None = None,
                 policy: GatewayPolicy | None = None) -> None:
        topics.check_id(region, "region")
        codec.check_id(aggregator_id, "aggregator_id")
        codec.check_id(key_id, "key_id")
        if region not in region_map.regions:
            raise RegionError(f"region: {region!r} is not in the region map ({', '.join(region_map.regions)})")
        if len(key) < 16:
            raise RegionError("key: at least 16 bytes")
        self.region, self.map = region, region_map
        self.aggregator_id, self.key_id, self.key = aggregator_id, key_id, key
        self.round_ms, self.shared = int(round_ms), bool(shared)
        self.max_carry_ms = 5 * self.round_ms if max_carry_ms is None else int(max_carry_ms)
        self.policy = policy if policy is not None else GatewayPolicy()
        self.gateways: dict[str, _Gateway] = {}
        self.rejected: dict[str, int] = {}
        self.counters = {"received": 0, "foreign": 0, "states": 0, "sums": 0, "late": 0}
        self._cut_ms: int | None = None     # shared mode: the previous tick's time

    def subscriptions(self) -> list[str]:
        """Births, deaths plainly (every member sees the inventory); states shared or plain."""
        states = shared_state_filter(self.region) if self.shared else topics.ALL_STATES
        return [topics.ALL_BIRTHS, topics.ALL_DEATHS, states]

    def _reject(self, topic: Any, reason: str) -> None:
        key = ":".join(reason.split(":")[:2])[:80]
        self.rejected[key] = self.rejected.get(key, 0) + 1
        log.warning("region %s: rejected %r: %s", self.region, topic, reason)

    def handle(self, topic: Any, payload: Any, now_ms: int) -> None:
        """One gateway message; never raises on bad input (logged, counted in `rejected`)."""
        self.counters["received"] += 1
        try:
            where, gid, kind = topics.parse(topic)
        except topics.TopicError as exc:
            return self._reject(topic, f"topic: {exc}")
        if where != "gw" or kind not in (topics.BIRTH, topics.DEATH, topics.STATE):
            return None
        if self.map.region_of(gid) != self.region:
            self.counters["foreign"] += 1     # another region's gateway: not ours to sum
            return None
        try:
            _, gid, msg = codec.decode(topic, payload)
        except codec.CodecError as exc:
            return self._reject(topic, f"{kind}: {exc}")
        gw = self.gateways.get(gid)
        reason = self.policy.check_message(kind, gid, msg)
        if not reason and kind == topics.BIRTH:
            reason = self.policy.check_birth(gid, msg)
        if not reason and kind == topics.STATE:
            reason = self.policy.check_state(msg, gw.inventory if gw is not None else None)
        if reason:
            return self._reject(topic, f"{kind}: {reason}")
        if kind == topics.BIRTH:
            gw = self.gateways.setdefault(gid, _Gateway())
            k = len(msg["tiers"])
            tier_w = [sum(dev["tier_w"][t] for dev in msg["devices"]) for t in range(k)]
            gw.group, gw.bd_seq, gw.online = msg["group"], msg["bd_seq"], True
            gw.capacity_w = sum(tier_w)
            gw.inventory = {"devices": len(msg["devices"]), "tier_w": tier_w, "capacity_w": gw.capacity_w}
            gw.p_w = gw.count = None
            gw.fresh = False
        elif kind == topics.DEATH:
            if gw is not None and gw.bd_seq == msg["bd_seq"]:
                gw.online, gw.p_w, gw.count, gw.fresh = False, None, None, False
        else:
            if gw is None or not gw.online or gw.bd_seq != msg["bd_seq"] or gw.group != msg["group"]:
                return self._reject(topic, "state: no live session of this bd_seq/group (waiting for a birth)")
            if gw.inventory is not None and len(msg["p_w"]) != len(gw.inventory["tier_w"]):
                return self._reject(topic, "state: p_w: tiers differ from the birth")
            if gw.p_w is not None and msg["ts_ms"] < gw.ts_ms:
                return None                    # older than the report held: superseded already
            gw.p_w, gw.count, gw.ts_ms, gw.rx_ms = msg["p_w"], msg["count"], msg["ts_ms"], now_ms
            gw.fail_safe, gw.fresh = bool(msg["fail_safe"]), True
            self.counters["states"] += 1
        return None

    def groups(self) -> list[str]:
        return sorted({g.group for g in self.gateways.values() if g.online and g.group is not None})

    def tick(self, boundary_ms: int, now_ms: int) -> list[Publish]:
        """The region sums of the window that ends now (one per group with a live gateway);
        `boundary_ms` names the round (`round` = boundary_ms // round_ms)."""
        out: list[Publish] = []
        for group in self.groups():
            payload = self._group_sum(group, boundary_ms, now_ms)
            if payload is not None:
                out.append((sum_topic(self.region, group), payload, 1, False))
        for gw in self.gateways.values():
            gw.fresh = False
        self._cut_ms = now_ms
        self.counters["sums"] += len(out)
        return out

    def _group_sum(self, group: str, boundary_ms: int, now_ms: int) -> bytes | None:
        covered, stale, missing, fail_safe = [], [], [], []
        p_w = count = None
        cap = 0
        ts_new, ts_old = None, None
        for gid in sorted(self.gateways):
            gw = self.gateways[gid]
            if gw.group != group or not gw.online:
                continue
            usable = gw.p_w is not None and (gw.fresh or (not self.shared and now_ms - gw.rx_ms <= self.max_carry_ms))
            if usable and self.shared and self._cut_ms is not None and gw.ts_ms <= self._cut_ms:
                self.counters["late"] += 1       # missed its round's tick: a peer may hold its successor
                usable = False
            if not usable:
                if not self.shared:
                    missing.append(gid)
                continue
            if p_w is None:
                p_w = [[0] * 4 for _ in gw.p_w]
                count = [[0] * 4 for _ in gw.p_w]
            if len(gw.p_w) != len(p_w):
                self._reject(gid, f"state: {len(gw.p_w)} tiers, group {group} has {len(p_w)}; left out")
                continue
            for t, row in enumerate(gw.p_w):
                for s in range(4):
                    p_w[t][s] += row[s]
                    count[t][s] += gw.count[t][s]
            covered.append(gid)
            if not gw.fresh:
                stale.append(gid)
            if gw.fail_safe:
                fail_safe.append(gid)
            cap += gw.capacity_w
            ts_new = gw.ts_ms if ts_new is None else max(ts_new, gw.ts_ms)
            ts_old = gw.ts_ms if ts_old is None else min(ts_old, gw.ts_ms)
        if p_w is None:
            return None                          # nothing heard in this window: nothing to say
        return make_region_sum(self.region, group, self.aggregator_id, boundary_ms // self.round_ms,
                               ts_new, ts_old, now_ms, self.shared, p_w, count, cap, covered[:MAX_IDS],
                               stale, missing[:MAX_IDS], fail_safe, self.key_id, self.key)


# ---------------------------------------------------------------------------- controller side
class MergedSum:
    """The merged partial sums of one (region, group, round)."""

    __slots__ = ("region", "group", "round", "ts_ms", "oldest_ts_ms", "p_w", "count", "covered", "stale",
                 "missing", "fail_safe", "partials", "overlaps")

    def __init__(self, region: str, group: str, round_index: int) -> None:
        self.region, self.group, self.round = region, group, round_index
        self.ts_ms = self.oldest_ts_ms = 0
        self.p_w: np.ndarray | None = None
        self.count: np.ndarray | None = None
        self.covered: set[str] = set()
        self.stale: set[str] = set()
        self.missing: set[str] = set()
        self.fail_safe: set[str] = set()
        self.partials: list[str] = []        # aggregator ids merged
        self.overlaps = 0                    # partials left out: they claimed merged gateways

    @property
    def state_kw(self) -> np.ndarray:
        return self.p_w / 1000.0


class RegionInbox:
    """Verified region sums → merged per (region, group, round) (module docstring)."""

    def __init__(self, keys: dict[str, bytes], round_ms: int = 2_000, max_age_ms: int | None = None) -> None:
        if not keys:
            raise RegionError("keys: at least one region key is needed")
        self.keys = dict(keys)
        self.round_ms = int(round_ms)
        self.max_age_ms = 5 * self.round_ms if max_age_ms is None else int(max_age_ms)
        self._partials: dict[tuple[str, str], dict[int, dict[str, dict]]] = {}
        self.accepted = 0
        self.overlaps = 0

    def offer(self, topic: Any, payload: Any, now_ms: int) -> tuple[str, MergedSum | None]:
        """("", the merged sum of that message's round) or (the rejection reason, None)."""
        try:
            msg = decode_region_sum(topic, payload, self.keys)
        except RegionError as exc:
            return str(exc), None
        if msg["issued_ts_ms"] > now_ms + MAX_SKEW_MS:
            return f"issued_ts_ms: {msg['issued_ts_ms'] - now_ms} ms in the future", None
        if msg["issued_ts_ms"] < now_ms - self.max_age_ms:
            return f"issued_ts_ms: {now_ms - msg['issued_ts_ms']} ms old (max {self.max_age_ms})", None
        rounds = self._partials.setdefault((msg["region"], msg["group"]), {})
        if rounds and msg["round"] <= max(rounds) - KEEP_ROUNDS:
            return f"round: {msg['round']} older than the rounds kept (newest {max(rounds)})", None
        rounds.setdefault(msg["round"], {})[msg["aggregator_id"]] = msg
        for old in sorted(rounds)[:-KEEP_ROUNDS]:
            del rounds[old]
        self.accepted += 1
        return "", self.merged(msg["region"], msg["group"], msg["round"])

    def merged(self, region: str, group: str, round_index: int) -> MergedSum | None:
        parts = self._partials.get((region, group), {}).get(round_index)
        if not parts:
            return None
        out = MergedSum(region, group, round_index)
        order = sorted(parts.values(), key=lambda m: (-len(m["covered"]), m["aggregator_id"]))
        for msg in order:
            cov = set(msg["covered"])
            if cov & out.covered:
                out.overlaps += 1
                log.warning("region %s group %s round %d: aggregator %s claims gateways already merged; "
                            "partial left out", region, group, round_index, msg["aggregator_id"])
                continue
            p_w = np.asarray(msg["p_w"], dtype=float)
            cnt = np.asarray(msg["count"], dtype=float)
            if out.p_w is None:
                out.p_w, out.count = p_w, cnt
                out.ts_ms, out.oldest_ts_ms = msg["ts_ms"], msg["oldest_ts_ms"]
            elif p_w.shape != out.p_w.shape:
                out.overlaps += 1
                continue
            else:
                out.p_w, out.count = out.p_w + p_w, out.count + cnt
                out.ts_ms = max(out.ts_ms, msg["ts_ms"])
                out.oldest_ts_ms = min(out.oldest_ts_ms, msg["oldest_ts_ms"])
            out.covered |= cov
            out.stale |= set(msg["stale"])
            out.missing |= set(msg["missing"])
            out.fail_safe |= set(msg["fail_safe"])
            out.partials.append(msg["aggregator_id"])
        out.missing -= out.covered
        return out if out.p_w is not None else None

    def latest(self, region: str, group: str) -> MergedSum | None:
        rounds = self._partials.get((region, group))
        if not rounds:
            return None
        return self.merged(region, group, max(rounds))

    def keys_of(self) -> list[tuple[str, str]]:
        return sorted(self._partials)


class RegionView:
    """The controller's region mode: the region map, the inbox of region sums, and the per-group
    snapshot built from them (the same `GroupSnapshot` the gateway-level aggregator gives).

    Per (region, group) the newest merged round is used while its newest report is at most
    `max_carry_ms` old; its gateways count as fresh (report age ≤ `stale_after_ms`, or listed
    `stale` by an exclusive aggregator: carried), every other live gateway of the group as
    missing. `scale` = capacity of the group's live gateways / capacity of the covered live ones,
    capacities from the births the controller itself validated."""

    def __init__(self, region_map: RegionMap, keys: dict[str, bytes], round_ms: int = 2_000,
                 max_age_ms: int | None = None) -> None:
        self.map = region_map
        self.inbox = RegionInbox(keys, round_ms, max_age_ms)
        self.unknown_covered = 0       # covered gateway ids the controller has no live session for

    def region_scale(self, merged: MergedSum, sessions: dict) -> float:
        """Live capacity of (region, group) over that of the covered gateways (1 when unknown)."""
        cap_live = cap_cov = 0.0
        for gid, ses in sessions.items():
            if ses.online and ses.group == merged.group and self.map.region_of(gid) == merged.region:
                cap_live += ses.capacity_kw
                if gid in merged.covered:
                    cap_cov += ses.capacity_kw
        unknown = [g for g in merged.covered if g not in sessions or not sessions[g].online]
        if unknown:
            self.unknown_covered += len(unknown)
            log.warning("region %s group %s: %d covered gateway(s) without a live session here (%s...)",
                        merged.region, merged.group, len(unknown), unknown[0])
        return cap_live / cap_cov if cap_cov > 0 else 1.0

    def snapshot(self, group: str, now_ms: int, sessions: dict, stale_after_ms: int,
                 max_carry_ms: int):
        from cloud.aggregator import GroupSnapshot

        live = {gid: ses for gid, ses in sessions.items() if ses.online and ses.group == group}
        total = counts = None
        fresh: set[str] = set()
        carried: set[str] = set()
        for region in self.map.regions:
            merged = self.inbox.latest(region, group)
            if merged is None or now_ms - merged.ts_ms > max_carry_ms:
                continue
            if total is None:
                total, counts = merged.state_kw.copy(), merged.count.copy()
            elif merged.p_w.shape != total.shape:
                log.warning("region %s group %s: %d tiers, group has %d; left out", region, group,
                            merged.p_w.shape[0], total.shape[0])
                continue
            else:
                total, counts = total + merged.state_kw, counts + merged.count
            ids = {g for g in merged.covered if g in live}
            if now_ms - merged.ts_ms > stale_after_ms:
                carried |= ids
            else:
                carried |= ids & merged.stale
                fresh |= ids - merged.stale
        if total is None:
            total = np.zeros((1, 4))
            counts = np.zeros((1, 4))
        cap_live = sum(ses.capacity_kw for ses in live.values())
        cap_in = sum(live[g].capacity_kw for g in fresh | carried)
        scale = cap_live / cap_in if cap_in > 0 else 1.0
        n_in = len(fresh) + len(carried)
        return GroupSnapshot(group, total, counts, len(live), len(fresh), len(carried),
                             len(live) - n_in, 0, scale, cap_live)
