"""Wire codec: canonical JSON encoders and strict decoders for every colorgrid/v1 message.

Shared by the gateway agent and the cloud controller (one schema, documented in docs/mqtt.md).
MicroPython-compatible (imports only ``json``; no typing, dataclasses or logging).

Encoding rules
  * canonical JSON: keys sorted, no spaces, UTF-8; ``dumps`` is our own encoder because
    MicroPython's ``json.dumps`` cannot sort keys;
  * every message carries ``v`` (payload schema version, 1) and ``ts_ms`` (UTC epoch ms);
  * powers are integer watts (``*_w``), per tier and state in the pinned order EF, ER, DF, DR;
  * probabilities are floats in [0, 1] quantised to a millionth (so that signatures, computed
    over integer millionths, agree between CPython and MicroPython);
  * ``seq`` is 0..255 and ``bd_seq`` (birth/death counter) is 0..255, both wrapping.

Decoding rules
  A decoder returns a plain ``dict`` or raises ``CodecError`` whose message starts with the
  offending field, e.g. ``"p_on[2]: out of range [0, 1]"``. Unknown fields, missing fields, wrong
  types, booleans where numbers belong, NaN/infinity and oversize payloads are all rejected.
  A decoder never raises anything but CodecError (the caller logs the reason and carries on).
"""
import json

from edge_agent import topics

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 262144
MAX_TIERS = 8
MAX_DEVICES = 10000
MAX_PARAMS = 64
MAX_STR = 256
TS_MAX_MS = 9007199254740991          # 2**53 - 1
WATT_MAX = 2147483647                 # per tier.state entry
COUNT_MAX = 2147483647
ROUND_ID_MAX = 9007199254740991
PPM = 1000000
COMMANDS = ("rebirth", "config_get", "config_set")


class CodecError(ValueError):
    """A payload that does not match its schema; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field + ": " + reason)
        self.field = field
        self.reason = reason


# ---------------------------------------------------------------- canonical JSON encoder

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escape(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20:
            out.append(_SHORT_ESCAPES.get(ch) or "\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _enc(obj, out: list, where: str) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        if not _finite(obj):
            raise CodecError(where or "value", "non-finite number")
        out.append(repr(obj))
    elif isinstance(obj, str):
        out.append(_escape(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _enc(item, out, where + "[" + str(i) + "]")
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        for i, key in enumerate(sorted(obj)):
            if not isinstance(key, str):
                raise CodecError(where or "value", "non-string key " + repr(key))
            if i:
                out.append(",")
            out.append(_escape(key))
            out.append(":")
            _enc(obj[key], out, (where + "." + key) if where else key)
        out.append("}")
    else:
        raise CodecError(where or "value", "cannot encode type " + type(obj).__name__)


def dumps(obj) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8."""
    out = []  # type: list
    _enc(obj, out, "")
    return "".join(out).encode()


def loads(payload) -> dict:
    """Parse a payload (bytes or str) into a JSON object; CodecError on anything else."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise CodecError("payload", "too large (" + str(len(payload)) + " bytes > "
                             + str(MAX_PAYLOAD_BYTES) + ")")
        try:
            payload = bytes(payload).decode()
        except Exception:
            raise CodecError("payload", "not UTF-8")
    if not isinstance(payload, str):
        raise CodecError("payload", "not bytes or str")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CodecError("payload", "too large")
    try:
        obj = json.loads(payload)
    except Exception as exc:  # ValueError, RecursionError, ... all mean "not JSON"
        raise CodecError("payload", "not JSON (" + type(exc).__name__ + ")")
    if not isinstance(obj, dict):
        raise CodecError("payload", "not a JSON object")
    return obj


# ---------------------------------------------------------------- field checkers

def _finite(x: float) -> bool:
    return x == x and x - x == 0.0


def check_fields(d: dict, required: tuple, optional: tuple) -> None:
    """CodecError naming the first missing required field or the first unknown one."""
    for key in required:
        if key not in d:
            raise CodecError(key, "missing")
    for key in sorted(d):
        if key not in required and key not in optional:
            raise CodecError(str(key), "unknown field")


_keys = check_fields   # the name the codec's own decoders use


def check_int(value, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(field, "not an integer")
    if value < lo or value > hi:
        raise CodecError(field, "out of range [" + str(lo) + ", " + str(hi) + "]")
    return value


def check_prob(value, field: str) -> float:
    """A probability in [0, 1] (int 0/1 accepted), returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(field, "not a number")
    if isinstance(value, float) and not _finite(value):
        raise CodecError(field, "not finite")
    if value < 0 or value > 1:
        raise CodecError(field, "out of range [0, 1]")
    return float(value)


def check_bool(value, field: str) -> bool:
    if value is not True and value is not False:
        raise CodecError(field, "not a boolean")
    return value


def check_id(value, field: str) -> str:
    if not topics.valid_id(value):
        raise CodecError(field, "not an identifier (1..64 chars of A-Z a-z 0-9 _ . -)")
    return value


def check_str(value, field: str) -> str:
    if not isinstance(value, str):
        raise CodecError(field, "not a string")
    if len(value) > MAX_STR:
        raise CodecError(field, "longer than " + str(MAX_STR))
    return value


def check_list(value, field: str, lo: int, hi: int) -> list:
    if not isinstance(value, list):
        raise CodecError(field, "not a list")
    if len(value) < lo or len(value) > hi:
        raise CodecError(field, "length " + str(len(value)) + " not in [" + str(lo) + ", "
                         + str(hi) + "]")
    return value


def check_ts(value, field: str) -> int:
    return check_int(value, field, 0, TS_MAX_MS)


def check_params(value, field: str) -> dict:
    """A flat parameter table: identifier -> int | finite float | bool | short string."""
    if not isinstance(value, dict):
        raise CodecError(field, "not an object")
    if len(value) > MAX_PARAMS:
        raise CodecError(field, "more than " + str(MAX_PARAMS) + " entries")
    for key in sorted(value):
        check_id(key, field + " key")
        item = value[key]
        where = field + "." + key
        if isinstance(item, float):
            if not _finite(item):
                raise CodecError(where, "not finite")
        elif isinstance(item, str):
            check_str(item, where)
        elif not isinstance(item, (bool, int)):
            raise CodecError(where, "not a number, boolean or string")
    return value


def _matrix(value, field: str, k: int, hi: int) -> list:
    check_list(value, field, k, k)
    for i, row in enumerate(value):
        where = field + "[" + str(i) + "]"
        check_list(row, where, 4, 4)
        for j, x in enumerate(row):
            check_int(x, where + "[" + str(j) + "]", 0, hi)
    return value


def _probs(value, field: str, k: int) -> list:
    check_list(value, field, k, k)
    return [check_prob(x, field + "[" + str(i) + "]") for i, x in enumerate(value)]


_SIGNED = ("key_id", "sig")   # optional on gateway messages: signed with the gateway's own key


def check_sig(d: dict) -> None:
    """``key_id`` (identifier) and ``sig`` (64 lowercase hex): both or neither (gateway
    messages); required on vectors, status and commands."""
    if ("key_id" in d) != ("sig" in d):
        raise CodecError("sig" if "key_id" in d else "key_id", "missing (key_id and sig go together)")
    if "sig" not in d:
        return
    check_id(d["key_id"], "key_id")
    sig = d["sig"]
    if not isinstance(sig, str) or len(sig) != 64:
        raise CodecError("sig", "not 64 hex characters")
    for ch in sig:
        if ch not in "0123456789abcdef":
            raise CodecError("sig", "not lowercase hex")


def _version(d: dict) -> None:
    check_int(d.get("v"), "v", SCHEMA_VERSION, SCHEMA_VERSION)


def quantize_prob(p) -> float:
    """p rounded to a millionth (the wire resolution of probabilities)."""
    return round(check_prob(p, "p") * PPM) / PPM


# ---------------------------------------------------------------- birth / death

_BIRTH_KEYS = ("v", "gateway_id", "group", "bd_seq", "seq", "ts_ms", "tiers", "devices", "params")


def check_birth(d: dict) -> dict:
    _keys(d, _BIRTH_KEYS, _SIGNED)
    _version(d)
    check_sig(d)
    check_id(d["gateway_id"], "gateway_id")
    check_id(d["group"], "group")
    check_int(d["bd_seq"], "bd_seq", 0, 255)
    check_int(d["seq"], "seq", 0, 0)
    check_ts(d["ts_ms"], "ts_ms")
    tiers = check_list(d["tiers"], "tiers", 2, MAX_TIERS)
    for i, name in enumerate(tiers):
        check_id(name, "tiers[" + str(i) + "]")
    k = len(tiers)
    devices = check_list(d["devices"], "devices", 0, MAX_DEVICES)
    for i, dev in enumerate(devices):
        where = "devices[" + str(i) + "]"
        if not isinstance(dev, dict):
            raise CodecError(where, "not an object")
        for key in sorted(dev):
            if key not in ("device_id", "kind", "tier_w"):
                raise CodecError(where + "." + str(key), "unknown field")
        check_id(dev.get("device_id"), where + ".device_id")
        if "kind" in dev:
            check_id(dev["kind"], where + ".kind")
        tier_w = check_list(dev.get("tier_w"), where + ".tier_w", k, k)
        for j, w in enumerate(tier_w):
            check_int(w, where + ".tier_w[" + str(j) + "]", 0, WATT_MAX)
    check_params(d["params"], "params")
    return d


def encode_birth(gateway_id: str, group: str, bd_seq: int, ts_ms: int, tiers, devices,
                 params: dict) -> bytes:
    """Birth (retained): inventory ``devices`` = [{"device_id", "tier_w": [W per tier]}]."""
    d = {"v": SCHEMA_VERSION, "gateway_id": gateway_id, "group": group, "bd_seq": bd_seq,
         "seq": 0, "ts_ms": ts_ms, "tiers": list(tiers), "devices": list(devices),
         "params": dict(params)}
    return dumps(check_birth(d))


def decode_birth(payload) -> dict:
    return check_birth(loads(payload))


_DEATH_KEYS = ("v", "gateway_id", "bd_seq", "ts_ms", "reason")


def check_death(d: dict) -> dict:
    _keys(d, _DEATH_KEYS, ("seq",) + _SIGNED)
    _version(d)
    check_sig(d)
    check_id(d["gateway_id"], "gateway_id")
    check_int(d["bd_seq"], "bd_seq", 0, 255)
    check_ts(d["ts_ms"], "ts_ms")
    if d["reason"] not in ("lost", "shutdown"):
        raise CodecError("reason", "not one of lost, shutdown")
    if "seq" in d:
        check_int(d["seq"], "seq", 0, 255)
    return d


def encode_death(gateway_id: str, bd_seq: int, ts_ms: int, reason: str = "lost",
                 seq=None) -> bytes:
    """Death: reason "lost" for the Last Will (fixed at connect, so no seq), "shutdown" when
    the agent stops cleanly (then with its seq)."""
    d = {"v": SCHEMA_VERSION, "gateway_id": gateway_id, "bd_seq": bd_seq, "ts_ms": ts_ms,
         "reason": reason}
    if seq is not None:
        d["seq"] = seq
    return dumps(check_death(d))


def decode_death(payload) -> dict:
    return check_death(loads(payload))


# ---------------------------------------------------------------- state report

_STATE_KEYS = ("v", "gateway_id", "group", "bd_seq", "seq", "ts_ms", "round", "p_w", "count",
               "vector_round_id", "fail_safe", "store_depth")


_STATE_OPTIONAL = ("vec_rejected", "vec_reject_reason") + _SIGNED


def check_state(d: dict) -> dict:
    _keys(d, _STATE_KEYS, _STATE_OPTIONAL)
    _version(d)
    check_sig(d)
    check_id(d["gateway_id"], "gateway_id")
    check_id(d["group"], "group")
    check_int(d["bd_seq"], "bd_seq", 0, 255)
    check_int(d["seq"], "seq", 0, 255)
    check_ts(d["ts_ms"], "ts_ms")
    check_int(d["round"], "round", 0, ROUND_ID_MAX)
    k = len(check_list(d["p_w"], "p_w", 2, MAX_TIERS))
    _matrix(d["p_w"], "p_w", k, WATT_MAX)
    _matrix(d["count"], "count", k, COUNT_MAX)
    check_int(d["vector_round_id"], "vector_round_id", -1, ROUND_ID_MAX)
    check_bool(d["fail_safe"], "fail_safe")
    check_int(d["store_depth"], "store_depth", 0, COUNT_MAX)
    if "vec_rejected" in d:
        check_int(d["vec_rejected"], "vec_rejected", 0, COUNT_MAX)
    if "vec_reject_reason" in d:
        check_str(d["vec_reject_reason"], "vec_reject_reason")
    return d


def encode_state(gateway_id: str, group: str, bd_seq: int, seq: int, ts_ms: int, round_index: int,
                 p_w, count, vector_round_id: int, fail_safe: bool, store_depth: int,
                 vec_rejected=None, vec_reject_reason=None) -> bytes:
    """State report of one round: ``p_w[tier][state]`` integer watts, ``count[tier][state]``
    slice counts, states in the order EF, ER, DF, DR. Optional: ``vec_rejected`` (vectors this
    agent rejected since it started) and ``vec_reject_reason`` (the last reason, "" if none)."""
    d = {"v": SCHEMA_VERSION, "gateway_id": gateway_id, "group": group, "bd_seq": bd_seq,
         "seq": seq, "ts_ms": ts_ms, "round": round_index,
         "p_w": [list(row) for row in p_w], "count": [list(row) for row in count],
         "vector_round_id": vector_round_id, "fail_safe": fail_safe, "store_depth": store_depth}
    if vec_rejected is not None:
        d["vec_rejected"] = vec_rejected
    if vec_reject_reason is not None:
        d["vec_reject_reason"] = vec_reject_reason
    return dumps(check_state(d))


def decode_state(payload) -> dict:
    return check_state(loads(payload))


# ---------------------------------------------------------------- control vector

_VECTOR_KEYS = ("v", "group", "round_id", "p_on", "p_off", "issued_ts_ms", "expires_ts_ms",
                "key_id", "sig")


def check_vector(d: dict) -> dict:
    _keys(d, _VECTOR_KEYS, ())
    _version(d)
    check_id(d["group"], "group")
    check_int(d["round_id"], "round_id", 0, ROUND_ID_MAX)
    k = len(check_list(d["p_on"], "p_on", 1, MAX_TIERS))
    d["p_on"] = _probs(d["p_on"], "p_on", k)
    d["p_off"] = _probs(d["p_off"], "p_off", k)
    issued = check_ts(d["issued_ts_ms"], "issued_ts_ms")
    expires = check_ts(d["expires_ts_ms"], "expires_ts_ms")
    if expires <= issued:
        raise CodecError("expires_ts_ms", "not after issued_ts_ms")
    check_id(d["key_id"], "key_id")
    sig = d["sig"]
    if not isinstance(sig, str) or len(sig) != 64:
        raise CodecError("sig", "not 64 hex characters")
    for ch in sig:
        if ch not in "0123456789abcdef":
            raise CodecError("sig", "not lowercase hex")
    return d


def vector_fields(group: str, round_id: int, p_on, p_off, issued_ts_ms: int,
                  expires_ts_ms: int, key_id: str) -> dict:
    """The unsigned vector (probabilities quantised to 1e-6); security.sign adds ``sig``."""
    return {"v": SCHEMA_VERSION, "group": group, "round_id": round_id,
            "p_on": [quantize_prob(p) for p in p_on], "p_off": [quantize_prob(p) for p in p_off],
            "issued_ts_ms": issued_ts_ms, "expires_ts_ms": expires_ts_ms, "key_id": key_id}


def encode_vector(d: dict) -> bytes:
    """Encode a signed vector dict (from security.sign(vector_fields(...)))."""
    return dumps(check_vector(dict(d)))


def decode_vector(payload) -> dict:
    """Schema check only; the signature, expiry and replay checks are security.VectorGuard's."""
    return check_vector(loads(payload))


# ---------------------------------------------------------------- controller status

_STATUS_KEYS = ("v", "controller_id", "online", "ts_ms", "session_ms", "key_id", "sig")


def check_status(d: dict) -> dict:
    _keys(d, _STATUS_KEYS, ())
    _version(d)
    check_id(d["controller_id"], "controller_id")
    check_bool(d["online"], "online")
    check_ts(d["ts_ms"], "ts_ms")
    check_ts(d["session_ms"], "session_ms")
    check_id(d["key_id"], "key_id")
    check_str(d["sig"], "sig")
    return d


def status_fields(controller_id: str, online: bool, ts_ms: int, session_ms: int, key_id: str) -> dict:
    """The status before signing (``security.make_status`` signs and encodes it)."""
    return {"v": SCHEMA_VERSION, "controller_id": controller_id, "online": online, "ts_ms": ts_ms,
            "session_ms": session_ms, "key_id": key_id}


def encode_status(d: dict) -> bytes:
    return dumps(check_status(d))


def decode_status(payload) -> dict:
    return check_status(loads(payload))


# ---------------------------------------------------------------- command / response

_CMD_KEYS = ("v", "txn", "cmd", "ts_ms", "expires_ts_ms", "key_id", "sig")


def check_cmd(d: dict) -> dict:
    _keys(d, _CMD_KEYS, ("params",))
    _version(d)
    check_id(d["txn"], "txn")
    if d["cmd"] not in COMMANDS:
        raise CodecError("cmd", "not one of " + ", ".join(COMMANDS))
    issued = check_ts(d["ts_ms"], "ts_ms")
    if check_ts(d["expires_ts_ms"], "expires_ts_ms") <= issued:
        raise CodecError("expires_ts_ms", "not after ts_ms")
    if d["cmd"] == "config_set":
        if "params" not in d:
            raise CodecError("params", "missing (config_set)")
    elif "params" in d:
        raise CodecError("params", "only allowed with config_set")
    if "params" in d:
        check_params(d["params"], "params")
    check_id(d["key_id"], "key_id")
    sig = d["sig"]
    if not isinstance(sig, str) or len(sig) != 64:
        raise CodecError("sig", "not 64 hex characters")
    return d


def cmd_fields(txn: str, cmd: str, ts_ms: int, expires_ts_ms: int, key_id: str,
               params=None) -> dict:
    """The unsigned command; security.sign adds ``sig``."""
    d = {"v": SCHEMA_VERSION, "txn": txn, "cmd": cmd, "ts_ms": ts_ms,
         "expires_ts_ms": expires_ts_ms, "key_id": key_id}
    if params is not None:
        d["params"] = dict(params)
    return d


def encode_cmd(d: dict) -> bytes:
    return dumps(check_cmd(dict(d)))


def decode_cmd(payload) -> dict:
    return check_cmd(loads(payload))


_RESP_KEYS = ("v", "gateway_id", "bd_seq", "seq", "ts_ms", "txn", "ok", "error", "params")


def check_resp(d: dict) -> dict:
    _keys(d, _RESP_KEYS, _SIGNED)
    _version(d)
    check_sig(d)
    check_id(d["gateway_id"], "gateway_id")
    check_int(d["bd_seq"], "bd_seq", 0, 255)
    check_int(d["seq"], "seq", 0, 255)
    check_ts(d["ts_ms"], "ts_ms")
    check_id(d["txn"], "txn")
    ok = check_bool(d["ok"], "ok")
    error = check_str(d["error"], "error")
    if ok == (error != ""):
        raise CodecError("error", "must be empty exactly when ok")
    check_params(d["params"], "params")
    return d


def encode_resp(gateway_id: str, bd_seq: int, seq: int, ts_ms: int, txn: str, ok: bool,
                error: str, params: dict) -> bytes:
    """Answer to a command (same ``txn``); ``params`` = the configuration after the command."""
    d = {"v": SCHEMA_VERSION, "gateway_id": gateway_id, "bd_seq": bd_seq, "seq": seq,
         "ts_ms": ts_ms, "txn": txn, "ok": ok, "error": error, "params": dict(params)}
    return dumps(check_resp(d))


def decode_resp(payload) -> dict:
    return check_resp(loads(payload))


# ---------------------------------------------------------------- dispatch by topic

def decode(topic, payload) -> tuple:
    """Decode any message of the tree: returns ``(kind, name, message)`` where kind is one of
    birth, death, state, resp, vector, status, cmd and name the gateway id or group.
    Raises CodecError (field ``topic`` for a topic outside the tree)."""
    try:
        where, name, kind = topics.parse(topic)
    except topics.TopicError as exc:
        raise CodecError("topic", str(exc))
    if where == "gw":
        decoder = {"birth": decode_birth, "death": decode_death, "state": decode_state,
                   "resp": decode_resp}[kind]
        msg = decoder(payload)
        if msg["gateway_id"] != name:
            raise CodecError("gateway_id", "does not match topic (" + name + ")")
        return kind, name, msg
    if where == "vector":
        msg = decode_vector(payload)
        if msg["group"] != name:
            raise CodecError("group", "does not match topic (" + name + ")")
        return "vector", name, msg
    if where == "status":
        return "status", "", decode_status(payload)
    return "cmd", name, decode_cmd(payload)
