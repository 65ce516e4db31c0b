"""Canonical encoding of hashed/signed data: one byte string per value, no floats.

Allowed: int (not bool-as-int confusion: bools are allowed and encode as true/false), str,
None, bytes (encoded as {"$b": hex}), lists/tuples and dicts with str keys.  The encoding is
JSON with sorted keys, no whitespace, ASCII only — so any JSON tool can read it, and the same
value always gives the same bytes.  Floats (and NaN/inf) are refused: amounts are integers in
the units of `market.settlement.units`.
"""
from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _json_str  # the C escaper json.dumps uses
from typing import Any

from market.settlement.errors import CanonicalEncodingError

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                            allow_nan=False, check_circular=False)


_PLAIN = (int, str, bool, type(None))


def _check(value: Any, where: str) -> Any:
    """Return `value` (a converted copy only where bytes/numpy ints occur); refuse floats."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is dict:
        out = None
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalEncodingError(f"{where}: dict key {key!r} is not a str")
            if type(item) in _PLAIN:
                continue
            checked = _check(item, f"{where}.{key}")
            if checked is not item:
                out = dict(value) if out is None else out
                out[key] = checked
        return value if out is None else out
    if t is list or t is tuple:
        return [_check(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (bytes, bytearray)):
        return {"$b": bytes(value).hex()}
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        raise CanonicalEncodingError(f"{where}: float {value!r} refused (use integer units)")
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu" and value.ndim == 0:
        return int(value)
    if isinstance(value, dict):
        return _check(dict(value), where)
    raise CanonicalEncodingError(f"{where}: type {type(value).__name__} cannot be encoded")


def encode(value: Any, where: str = "value") -> bytes:
    """Canonical bytes of `value` (raises CanonicalEncodingError naming the offending field)."""
    return _encoder.encode(_check(value, where)).encode("ascii")


_FLAT_TEMPLATES: dict[tuple, tuple[list[str], str]] = {}  # payload keys as given -> sorted keys, text template


def encode_flat(value: dict) -> str | None:
    """Fast path of `encode` for a dict of str keys -> int/str/bool/None (every ledger payload but
    genesis and readings with nested data): the same text, from a template per key set (sorted
    '"key":%s' parts, cached for up to 4096 key orders) filled with the JSON of each value.
    Returns None when `value` needs the general encoder (nested values, other types)."""
    keys = tuple(value)
    template = _FLAT_TEMPLATES.get(keys)
    if template is None:
        if not all(type(key) is str for key in keys):
            return None
        order = sorted(keys)
        template = (order, "{" + ",".join(_json_str(key).replace("%", "%%") + ":%s" for key in order) + "}")
        if len(_FLAT_TEMPLATES) < 4096:
            _FLAT_TEMPLATES[keys] = template
    order, text = template
    parts = []
    for key in order:
        item = value[key]
        t = type(item)
        if t is str:
            parts.append(_json_str(item))
        elif t is int:
            parts.append(int.__repr__(item))
        elif t is bool:
            parts.append("true" if item else "false")
        elif item is None:
            parts.append("null")
        else:
            return None
    return text % tuple(parts)


def encode_entry(seq: int, prev_hex: str, kind: str, signer: str, ts_ms: int, payload: dict) -> bytes:
    """canonical.encode({seq, prev, kind, signer, ts_ms, payload}) — the ledger entry body — from a
    template (keys in sorted order: kind, payload, prev, seq, signer, ts_ms) when every part is plain;
    otherwise the general encoder, which also names a refused field."""
    if type(seq) is int and type(ts_ms) is int and type(kind) is str and type(signer) is str \
            and type(prev_hex) is str and type(payload) is dict:
        flat = encode_flat(payload)
        if flat is not None:
            return (f'{{"kind":{_json_str(kind)},"payload":{flat},"prev":{_json_str(prev_hex)},'
                    f'"seq":{seq},"signer":{_json_str(signer)},"ts_ms":{ts_ms}}}').encode("ascii")
    return encode({"seq": seq, "prev": prev_hex, "kind": kind, "signer": signer, "ts_ms": ts_ms,
                   "payload": payload}, f"entry {seq}")


def decode(data: bytes) -> Any:
    """Inverse of `encode` (bytes come back as {"$b": hex}; use `unbytes` to restore)."""
    return json.loads(data)


def unbytes(value: Any) -> bytes:
    if isinstance(value, dict) and set(value) == {"$b"}:
        return bytes.fromhex(value["$b"])
    raise CanonicalEncodingError(f"not an encoded bytes value: {value!r}")
