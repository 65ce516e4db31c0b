"""Signed control messages: HMAC-SHA256 over a canonical form, expiry and replay protection.

MicroPython-compatible: HMAC is implemented here over ``hashlib.sha256`` (RFC 2104; MicroPython
has no ``hmac`` module), hex via ``binascii``.

Gateways may sign their own messages too (``sign_report``, the gateway's own key): births,
states, deaths and responses then carry ``key_id`` and ``sig``.

Signing form of a message (vector or command): the message without ``sig``, every float x
replaced by the integer round(x * 10**6), encoded as canonical JSON (sorted keys, no spaces).
Probabilities travel quantised to a millionth, so both runtimes rebuild the same bytes whatever
their float formatting. ``sig`` = lowercase hex HMAC-SHA256(key[key_id], signing form).

A gateway accepts a vector only if (checked in this order, first failure is the logged reason):
  1. its group is the gateway's group;
  2. ``key_id`` is a known key and the signature verifies (constant-time compare);
  3. now < ``expires_ts_ms`` (not expired) and ``issued_ts_ms`` <= now + max_skew_ms;
  4. ``expires_ts_ms - issued_ts_ms`` <= max_ttl_ms (a leaked vector cannot live forever);
  5. ``round_id`` > the last accepted round id of the group (replay window: anything at or
     below it is a replay; re-delivery of the same round, e.g. QoS 1 duplicates, is rejected
     as "replay" and is harmless because the vector in force is unchanged).
"""
import binascii
import hashlib

from edge_agent import codec

BLOCK = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || msg))."""
    if len(key) > BLOCK:
        key = sha256(key)
    key = key + b"\x00" * (BLOCK - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))
    inner.update(msg)
    outer = hashlib.sha256(bytes([b ^ 0x5C for b in key]))
    outer.update(inner.digest())
    return outer.digest()


def hexlify(data: bytes) -> str:
    return binascii.hexlify(data).decode()


def equal_ct(a: str, b: str) -> bool:
    """Constant-time string comparison (length leak only)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= ord(a[i]) ^ ord(b[i])
    return diff == 0


def _ppm(obj):
    if isinstance(obj, float):
        return round(obj * codec.PPM)
    if isinstance(obj, (list, tuple)):
        return [_ppm(x) for x in obj]
    if isinstance(obj, dict):
        out = {}
        for key in obj:
            out[key] = _ppm(obj[key])
        return out
    return obj


def signing_bytes(msg: dict) -> bytes:
    """The canonical form that is signed: msg without ``sig``, floats as integer millionths."""
    body = {}
    for key in msg:
        if key != "sig":
            body[key] = msg[key]
    return codec.dumps(_ppm(body))


def sign(msg: dict, key: bytes) -> dict:
    """Return a copy of `msg` with ``sig`` = hex HMAC-SHA256(key, signing_bytes(msg))."""
    out = dict(msg)
    out["sig"] = hexlify(hmac_sha256(key, signing_bytes(msg)))
    return out


def verify(msg: dict, keys: dict) -> str:
    """"" when ``msg["sig"]`` verifies under ``keys[msg["key_id"]]``, else the reason."""
    key = keys.get(msg.get("key_id"))
    if key is None:
        return "unknown key_id " + repr(msg.get("key_id"))
    want = hexlify(hmac_sha256(key, signing_bytes(msg)))
    sig = msg.get("sig")
    if not isinstance(sig, str) or not equal_ct(want, sig):
        return "bad signature"
    return ""


def make_vector(group: str, round_id: int, p_on, p_off, issued_ts_ms: int, ttl_ms: int,
                key_id: str, key: bytes) -> bytes:
    """Encode a signed control vector (the controller's one call)."""
    fields = codec.vector_fields(group, round_id, p_on, p_off, issued_ts_ms,
                                 issued_ts_ms + ttl_ms, key_id)
    return codec.encode_vector(sign(fields, key))


def make_cmd(txn: str, cmd: str, ts_ms: int, ttl_ms: int, key_id: str, key: bytes,
             params=None) -> bytes:
    """Encode a signed command (rebirth, config_get, config_set)."""
    fields = codec.cmd_fields(txn, cmd, ts_ms, ts_ms + ttl_ms, key_id, params)
    return codec.encode_cmd(sign(fields, key))


def make_status(controller_id: str, online: bool, ts_ms: int, session_ms: int, key_id: str,
                key: bytes) -> bytes:
    """Encode a signed controller status (online, or the offline Last Will). ``session_ms`` is
    the controller process's start time: gateways ignore statuses of an older session."""
    fields = codec.status_fields(controller_id, online, ts_ms, session_ms, key_id)
    return codec.encode_status(sign(fields, key))


def sign_report(payload: bytes, key_id: str, key: bytes) -> bytes:
    """A gateway message (birth, state, death, resp; already encoded) signed with the gateway's
    own key: ``key_id`` and ``sig`` added, same signing form as a vector. The controller checks
    it against the gateway's enrollment keys (cloud.enrollment)."""
    msg = codec.loads(payload)
    msg["key_id"] = key_id
    msg.pop("sig", None)
    return codec.dumps(sign(msg, key))


class VectorGuard:
    """Decides whether a decoded control vector may be applied (see module docstring).

    ``check(msg, now_ms)`` returns "" when accepted (and records its round id) or the reason.
    """

    def __init__(self, keys: dict, group: str, max_ttl_ms: int = 60000,
                 max_skew_ms: int = 5000) -> None:
        self.keys = keys
        self.group = group
        self.max_ttl_ms = max_ttl_ms
        self.max_skew_ms = max_skew_ms
        self.last_round_id = -1
        # set by the agent when it starts: the replay memory (last_round_id) is RAM only, so a
        # vector issued before this process started (one captured earlier and replayed after a
        # restart, or one queued in the persistent session) is refused once; None: no floor
        self.min_issued_ms = None  # type: int | None

    def check(self, msg: dict, now_ms: int) -> str:
        if msg.get("group") != self.group:
            return "wrong group " + repr(msg.get("group"))
        reason = verify(msg, self.keys)
        if reason:
            return reason
        if now_ms >= msg["expires_ts_ms"]:
            return "expired (expires_ts_ms " + str(msg["expires_ts_ms"]) + " <= now " \
                + str(now_ms) + ")"
        if msg["issued_ts_ms"] > now_ms + self.max_skew_ms:
            return "issued in the future (issued_ts_ms " + str(msg["issued_ts_ms"]) + ")"
        if msg["expires_ts_ms"] - msg["issued_ts_ms"] > self.max_ttl_ms:
            return "lifetime longer than " + str(self.max_ttl_ms) + " ms"
        if self.min_issued_ms is not None and msg["issued_ts_ms"] < self.min_issued_ms:
            return "issued before this agent started (issued_ts_ms " + str(msg["issued_ts_ms"]) \
                + " < " + str(self.min_issued_ms) + ")"
        if msg["round_id"] <= self.last_round_id:
            return "replay (round_id " + str(msg["round_id"]) + " <= last accepted " \
                + str(self.last_round_id) + ")"
        self.last_round_id = msg["round_id"]
        return ""


class CmdGuard:
    """Same checks for commands: signature, expiry, and each ``txn`` accepted once (a bounded
    memory of the last `window` transaction ids)."""

    def __init__(self, keys: dict, window: int = 64, max_ttl_ms: int = 300000) -> None:
        self.keys = keys
        self.window = window
        self.max_ttl_ms = max_ttl_ms
        self.seen = []  # type: list

    def check(self, msg: dict, now_ms: int) -> str:
        reason = verify(msg, self.keys)
        if reason:
            return reason
        if now_ms >= msg["expires_ts_ms"]:
            return "expired"
        if msg["expires_ts_ms"] - msg["ts_ms"] > self.max_ttl_ms:
            return "lifetime longer than " + str(self.max_ttl_ms) + " ms"
        if msg["txn"] in self.seen:
            return "replay (txn " + msg["txn"] + " already handled)"
        self.seen.append(msg["txn"])
        if len(self.seen) > self.window:
            self.seen.pop(0)
        return ""
