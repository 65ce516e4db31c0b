"""Which gateways the controller listens to, how big they may say they are, and whose key signs
their reports (issue 16.4: one gateway must not be able to blind the controller).

`GatewayPolicy` is what `cloud.rounds.ControllerCore` asks about every gateway message:

- **Enrollment** (optional, `--enrollment FILE`): only the listed gateway ids are heard; a birth,
  state, death or response of any other id is rejected (`gateway_id: not enrolled`) and asks for
  no rebirth. Without an enrollment every id is heard (the lab ACL is then the only gate).
- **Signed reports**: an enrolled gateway with `keys` must sign its births, states, deaths and
  responses with one of them (HMAC-SHA256 over the signing form, `edge_agent.security
  .sign_report`, MicroPython-compatible); an unsigned, forged or other gateway's signature is
  rejected (`sig: ...`), and a signed state whose `ts_ms` is not newer than the last one accepted
  is a replay (`ts_ms: ...`). A gateway enrolled without keys may send unsigned messages.
- **Declared-kW limits** (birth): no device above `max_device_kw` (default 100 kW, per device
  Σ tier_w), the gateway in all not above its enrollment `max_kw`, else `max_gateway_kw` when
  configured; a gateway enrolled with a `group` may only join that group.
- **Reports checked against the birth inventory** (state): per tier, Σ count ≤ the devices of
  the birth and Σ p_w ≤ the birth's Σ tier_w × (1 + `report_tolerance`) (default 10 %).
- **One gateway's share capped** (`outlier_cap_kw`): a gateway declaring more than
  `outlier_factor` (default 10) × the median declared kW of its group's live gateways (once the
  group has more than `min_peers` = 2) counts for at most that much (its reports are scaled down,
  its capacity too) and is flagged in the round records (`outliers`), unless its enrollment
  `max_kw` vouches for it.

Enrollment file (JSON):

    {"max_device_kw": 50,                                  (optional)
     "gateways": {"gw-00001": {"keys": {"gw-00001": "<hex, >= 16 bytes>"},   (optional)
                               "max_kw": 40.0,             (optional)
                               "group": "671.1"}, ...}}    (optional)

Every error is an `EnrollmentError` naming the field (`enrollment.gateways.gw-1.max_kw: ...`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edge_agent import codec, keyfile, security, topics

DEFAULT_MAX_DEVICE_KW = 100.0
DEFAULT_REPORT_TOLERANCE = 0.10
DEFAULT_OUTLIER_FACTOR = 10.0


class EnrollmentError(ValueError):
    """An enrollment list or gateway limit that cannot be used (the message names the field)."""


def _positive(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise EnrollmentError(f"{field}: expected a finite number > 0, got {value!r}")
    return float(value)


class EnrollmentRecord:
    __slots__ = ("gateway_id", "keys", "max_kw", "group")

    def __init__(self, gateway_id: str, keys: dict[str, bytes], max_kw: float | None,
                 group: str | None) -> None:
        self.gateway_id, self.keys, self.max_kw, self.group = gateway_id, keys, max_kw, group


class Enrollment:
    """The enrolled gateways (module docstring)."""

    def __init__(self, records: dict[str, EnrollmentRecord], max_device_kw: float | None = None) -> None:
        self.records = records
        self.max_device_kw = max_device_kw

    @classmethod
    def parse(cls, doc: Any, where: str = "enrollment") -> "Enrollment":
        if not isinstance(doc, dict):
            raise EnrollmentError(f"{where}: expected a JSON object with \"gateways\"")
        for key in sorted(doc):
            if key not in ("gateways", "max_device_kw"):
                raise EnrollmentError(f"{where}.{key}: unknown field (expected gateways, max_device_kw)")
        gateways = doc.get("gateways")
        if not isinstance(gateways, dict):
            raise EnrollmentError(f"{where}.gateways: expected an object {{gateway_id: {{...}}}}")
        max_device_kw = None
        if "max_device_kw" in doc:
            max_device_kw = _positive(doc["max_device_kw"], f"{where}.max_device_kw")
        records = {}
        for gid in sorted(gateways):
            if not topics.valid_id(gid):
                raise EnrollmentError(f"{where}.gateways: {gid!r} is not a gateway id "
                                      f"(1..64 chars of A-Z a-z 0-9 _ . -)")
            entry, field = gateways[gid], f"{where}.gateways.{gid}"
            if not isinstance(entry, dict):
                raise EnrollmentError(f"{field}: expected an object")
            for key in sorted(entry):
                if key not in ("keys", "max_kw", "group"):
                    raise EnrollmentError(f"{field}.{key}: unknown field (expected keys, max_kw, group)")
            keys: dict[str, bytes] = {}
            if "keys" in entry:
                try:
                    keys = keyfile.parse_key_table(entry["keys"], f"{field}.keys")
                except keyfile.KeyFileError as exc:
                    raise EnrollmentError(str(exc)) from None
            max_kw = _positive(entry["max_kw"], f"{field}.max_kw") if "max_kw" in entry else None
            group = entry.get("group")
            if group is not None and not topics.valid_id(group):
                raise EnrollmentError(f"{field}.group: not a group id, got {group!r}")
            records[gid] = EnrollmentRecord(gid, keys, max_kw, group)
        return cls(records, max_device_kw)

    @classmethod
    def from_file(cls, path: str | Path, flag: str = "--enrollment") -> "Enrollment":
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise EnrollmentError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise EnrollmentError(f"{flag}: {path} is not JSON ({exc})") from None
        try:
            return cls.parse(doc)
        except EnrollmentError as exc:
            raise EnrollmentError(f"{flag}: {path}: {exc}") from None


class GatewayPolicy:
    """What the controller accepts from gateways (module docstring). Reasons returned are
    "field: why" (the core prefixes the message kind)."""

    def __init__(self, enrollment: Enrollment | None = None, max_device_kw: float | None = None,
                 max_gateway_kw: float | None = None, report_tolerance: float = DEFAULT_REPORT_TOLERANCE,
                 outlier_factor: float = DEFAULT_OUTLIER_FACTOR, min_peers: int = 2) -> None:
        self.enrollment = enrollment
        if max_device_kw is None:
            max_device_kw = (enrollment.max_device_kw if enrollment is not None and enrollment.max_device_kw
                             else DEFAULT_MAX_DEVICE_KW)
        self.max_device_kw = _positive(max_device_kw, "max_device_kw")
        self.max_gateway_kw = None if max_gateway_kw is None else _positive(max_gateway_kw, "max_gateway_kw")
        if isinstance(report_tolerance, bool) or not isinstance(report_tolerance, (int, float)) \
                or not 0.0 <= report_tolerance <= 10.0:
            raise EnrollmentError(f"report_tolerance: expected 0..10, got {report_tolerance!r}")
        self.report_tolerance = float(report_tolerance)
        self.outlier_factor = _positive(outlier_factor, "outlier_factor")
        self.min_peers = int(min_peers)
        self._last_signed_ts: dict[str, int] = {}

    def record(self, gid: str) -> EnrollmentRecord | None:
        return None if self.enrollment is None else self.enrollment.records.get(gid)

    def check_message(self, kind: str, gid: str, msg: dict) -> str:
        """Enrollment and signature of any gateway message (birth, state, death, resp)."""
        if self.enrollment is None:
            return ""
        rec = self.enrollment.records.get(gid)
        if rec is None:
            return "gateway_id: not enrolled"
        if not rec.keys:
            return ""
        if "sig" not in msg:
            return f"sig: missing (gateway {gid} is enrolled with a key: its reports must be signed)"
        reason = security.verify(msg, rec.keys)
        if reason:
            return f"sig: {reason}"
        if kind == "state":
            last = self._last_signed_ts.get(gid)
            if last is not None and msg["ts_ms"] <= last:
                return f"ts_ms: {msg['ts_ms']} not after the last signed report ({last}): a replay"
            self._last_signed_ts[gid] = msg["ts_ms"]
        return ""

    def limit_kw(self, gid: str) -> tuple[float | None, str]:
        rec = self.record(gid)
        if rec is not None and rec.max_kw is not None:
            return rec.max_kw, "its enrollment max_kw"
        if self.max_gateway_kw is not None:
            return self.max_gateway_kw, "max_gateway_kw"
        return None, ""

    def check_birth(self, gid: str, msg: dict) -> str:
        """Declared kW and group against the limits (after check_message)."""
        rec = self.record(gid)
        if rec is not None and rec.group is not None and msg["group"] != rec.group:
            return f"group: {msg['group']!r}, gateway {gid} is enrolled for {rec.group!r}"
        total_w = 0
        for i, dev in enumerate(msg["devices"]):
            dev_w = sum(dev["tier_w"])
            if dev_w > self.max_device_kw * 1000.0:
                return (f"devices: devices[{i}] declares {dev_w / 1000.0:g} kW, over the maximum "
                        f"per device {self.max_device_kw:g} kW")
            total_w += dev_w
        limit, why = self.limit_kw(gid)
        if limit is not None and total_w > limit * 1000.0:
            return f"devices: declares {total_w / 1000.0:g} kW in all, over {why} {limit:g} kW"
        return ""

    def check_state(self, msg: dict, inventory: dict | None) -> str:
        """The report against the birth inventory {"devices": n, "tier_w": [W per tier] or None,
        "capacity_w": W}: per tier Σ count ≤ devices, Σ p_w ≤ tier_w × (1 + tolerance)."""
        if not inventory:
            return ""
        slack = 1.0 + self.report_tolerance
        n_dev = inventory.get("devices")
        tier_w = inventory.get("tier_w")
        p_w, count = msg["p_w"], msg["count"]
        if tier_w is not None and len(tier_w) != len(p_w):
            return f"p_w: {len(p_w)} tiers, the birth declared {len(tier_w)}"
        for t in range(len(p_w)):
            if n_dev is not None and sum(count[t]) > n_dev:
                return f"count: tier {t}: {sum(count[t])} slices, the birth declared {n_dev} devices"
            if tier_w is not None and sum(p_w[t]) > tier_w[t] * slack + 1:
                return f"p_w: tier {t}: {sum(p_w[t])} W, the birth declared {tier_w[t]} W"
        cap = inventory.get("capacity_w")
        if tier_w is None and cap is not None and sum(sum(row) for row in p_w) > cap * slack + 1:
            return f"p_w: {sum(sum(row) for row in p_w)} W in all, the birth declared {cap} W"
        return ""

    def outlier_cap_kw(self, gid: str, declared_kw: float, group_median_kw: float,
                       n_gateways: int) -> float | None:
        """The kW this gateway may count for in its group (None: no cap): `outlier_factor` ×
        the median declared kW of the group's live gateways, once the group has more than
        `min_peers` of them (then one gateway cannot move the median out of the others' range)."""
        if n_gateways < self.min_peers + 1:
            return None
        rec = self.record(gid)
        if rec is not None and rec.max_kw is not None and declared_kw <= rec.max_kw:
            return None                       # the enrollment vouches for its size
        cap = self.outlier_factor * group_median_kw
        return cap if declared_kw > cap else None


def enroll_fleet(gateway_keys: dict[str, bytes], max_kw: float | None = None) -> dict:
    """An enrollment document for `gateway_keys` {gateway_id: key} (each key under the gateway's
    own id as key id), e.g. for a lab fleet; write it with json.dumps."""
    gateways = {}
    for gid in sorted(gateway_keys):
        codec.check_id(gid, "gateway_id")
        entry: dict[str, Any] = {"keys": {gid: gateway_keys[gid].hex()}}
        if max_kw is not None:
            entry["max_kw"] = max_kw
        gateways[gid] = entry
    return {"gateways": gateways}
