"""Opaque bearer tokens: scoped per stakeholder, stored only as a hash, expiring, revocable.

A token is ``cgp_<token_id>_<secret>``: `token_id` (12 hex digits) names the row, `secret` is
``secrets.token_urlsafe(32)`` (256 random bits). The store keeps only SHA-256(token) as hex,
compared in constant time (`hmac.compare_digest`); the token itself is shown once, when created.

Contract `TokenStore` with `DbTokenStore` (the portal database, `portal.db`: SQLite or
PostgreSQL, every write committed before the call returns, so a revocation from another process
is seen by the very next request; `SqliteTokenStore` is the same class) and `FakeTokenStore`
(memory, for tests). Both share the logic of `_TokenLogic`; they differ only in
where rows live.

Scopes (`SCOPES`): ``fleet:read`` (fleet state, gateways, command log of the token's groups),
``goals:write`` (submit / cancel goal schedules for the token's groups), ``market:read`` (market
results, ledger checkpoints and proofs), ``metrics:read`` (`/metrics`, the operator's Prometheus
scrape: request and token figures, fleet figures of every group), ``admin`` (every scope, every
group, every stakeholder's resources, the audit log). `groups` are the control groups the token's stakeholder may see and
dispatch to; ``*`` means every group.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from pathlib import Path
from typing import Iterable, Protocol

from portal.db import Database, open_database

SCOPES = ("fleet:read", "goals:write", "market:read", "metrics:read", "admin")
ADMIN = "admin"
ALL_GROUPS = "*"
PREFIX = "cgp"
MAX_TTL_S = 10 * 366 * 86_400          # ten years
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN = re.compile(r"^cgp_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})$")
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


class TokenError(ValueError):
    """A token operation with a bad field (the message starts with the field's name)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hash_token(token: str) -> str:
    """SHA-256 of the token text, lowercase hex: the only form a store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id_of(text: str) -> str | None:
    """The token id inside a well-formed token, or None."""
    m = _TOKEN.match(text)
    return m.group(1) if m else None


class TokenRecord:
    """One stored token (never the token itself)."""

    __slots__ = ("token_id", "token_hash", "stakeholder", "scopes", "groups", "created_ts_ms",
                 "expires_ts_ms", "revoked_ts_ms")

    def __init__(self, token_id: str, token_hash: str, stakeholder: str, scopes: Iterable[str],
                 groups: Iterable[str], created_ts_ms: int, expires_ts_ms: int,
                 revoked_ts_ms: int | None = None) -> None:
        self.token_id = token_id
        self.token_hash = token_hash
        self.stakeholder = stakeholder
        self.scopes = tuple(scopes)
        self.groups = tuple(groups)
        self.created_ts_ms = created_ts_ms
        self.expires_ts_ms = expires_ts_ms
        self.revoked_ts_ms = revoked_ts_ms

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def has_scope(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def may_group(self, group: str) -> bool:
        return self.is_admin or ALL_GROUPS in self.groups or group in self.groups

    def status(self, at_ms: int) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_ts_ms is not None:
            return "revoked"
        return "expired" if at_ms >= self.expires_ts_ms else "active"

    def public(self, at_ms: int) -> dict:
        """What may be shown about a token: everything but its hash."""
        return {"token_id": self.token_id, "stakeholder": self.stakeholder, "scopes": list(self.scopes),
                "groups": list(self.groups), "created_ts_ms": self.created_ts_ms,
                "expires_ts_ms": self.expires_ts_ms, "revoked_ts_ms": self.revoked_ts_ms,
                "status": self.status(at_ms)}


class AuthResult:
    """`record` when the token is good, else None and `reason` (``unknown``, ``expired``, ``revoked``)."""

    __slots__ = ("record", "reason")

    def __init__(self, record: TokenRecord | None, reason: str) -> None:
        self.record = record
        self.reason = reason


class TokenStore(Protocol):
    def create(self, stakeholder: str, scopes: Iterable[str], ttl_s: float, groups: Iterable[str] = (),
               at_ms: int | None = None) -> tuple[str, TokenRecord]:
        """A new token (returned once, in clear) and its record."""
        ...

    def authenticate(self, token: str, at_ms: int | None = None) -> AuthResult: ...

    def revoke(self, token_or_id: str, at_ms: int | None = None) -> TokenRecord:
        """Revoke by token text or token id; TokenError when unknown."""
        ...

    def tokens(self) -> list[TokenRecord]: ...

    def close(self) -> None: ...


def check_new(stakeholder: str, scopes: Iterable[str], ttl_s: float, groups: Iterable[str]) -> tuple:
    """Validated (stakeholder, scopes, ttl_ms, groups); TokenError naming the field."""
    if not isinstance(stakeholder, str) or not _ID.match(stakeholder):
        raise TokenError(f"stakeholder: expected 1-64 characters of A-Z a-z 0-9 _ . -, got {stakeholder!r}")
    scopes = tuple(dict.fromkeys(scopes))
    if not scopes:
        raise TokenError("scope: give at least one of " + ", ".join(SCOPES))
    for s in scopes:
        if s not in SCOPES:
            raise TokenError(f"scope: unknown scope {s!r} (one of {', '.join(SCOPES)})")
    groups = tuple(dict.fromkeys(groups))
    for g in groups:
        if g != ALL_GROUPS and (not isinstance(g, str) or not _ID.match(g)):
            raise TokenError(f"group: expected a group id (1-64 characters of A-Z a-z 0-9 _ . -) or '*', got {g!r}")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s <= MAX_TTL_S:
        raise TokenError(f"ttl: expected seconds in (0, {MAX_TTL_S}], got {ttl_s!r}")
    return stakeholder, tuple(sorted(scopes)), int(round(ttl_s * 1000)), tuple(sorted(groups))


class _TokenLogic:
    """Creation, authentication and revocation over four row primitives of a subclass."""

    def _insert(self, rec: TokenRecord) -> None: raise NotImplementedError
    def _get(self, token_id: str) -> TokenRecord | None: raise NotImplementedError
    def _all(self) -> list[TokenRecord]: raise NotImplementedError
    def _set_revoked(self, token_id: str, at_ms: int) -> None: raise NotImplementedError

    def create(self, stakeholder, scopes, ttl_s, groups=(), at_ms=None):
        stakeholder, scopes, ttl_ms, groups = check_new(stakeholder, scopes, ttl_s, groups)
        at = now_ms() if at_ms is None else int(at_ms)
        while True:
            token_id = secrets.token_hex(6)
            if self._get(token_id) is None:
                break
        token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        rec = TokenRecord(token_id, hash_token(token), stakeholder, scopes, groups, at, at + ttl_ms)
        self._insert(rec)
        return token, rec

    def authenticate(self, token, at_ms=None):
        at = now_ms() if at_ms is None else int(at_ms)
        token_id = token_id_of(token) if isinstance(token, str) else None
        rec = self._get(token_id) if token_id else None
        presented = hash_token(token) if isinstance(token, str) else _DUMMY_HASH
        # constant time whether or not the id exists: always one full comparison
        good = hmac.compare_digest(presented, rec.token_hash if rec is not None else _DUMMY_HASH)
        if rec is None or not good:
            return AuthResult(None, "unknown")
        status = rec.status(at)
        return AuthResult(rec, "") if status == "active" else AuthResult(None, status)

    def revoke(self, token_or_id, at_ms=None):
        at = now_ms() if at_ms is None else int(at_ms)
        text = str(token_or_id).strip()
        token_id = token_id_of(text)
        if token_id is not None:
            rec = self._get(token_id)
            if rec is None or not hmac.compare_digest(hash_token(text), rec.token_hash):
                raise TokenError("token: no such token")
        elif re.fullmatch(r"[0-9a-f]{12}", text):
            rec = self._get(text)
            if rec is None:
                raise TokenError(f"token: no token with id {text}")
        else:
            raise TokenError("token: expected a token (cgp_…) or a 12-hex-digit token id")
        if rec.revoked_ts_ms is None:
            self._set_revoked(rec.token_id, at)
            rec.revoked_ts_ms = at
        return rec

    def tokens(self):
        return self._all()


class FakeTokenStore(_TokenLogic):
    """In memory, same behaviour as `SqliteTokenStore`."""

    def __init__(self) -> None:
        self._rows: dict[str, TokenRecord] = {}

    def _insert(self, rec):
        self._rows[rec.token_id] = rec

    def _get(self, token_id):
        rec = self._rows.get(token_id)
        return None if rec is None else TokenRecord(*(getattr(rec, s) for s in TokenRecord.__slots__))

    def _all(self):
        return sorted((self._get(k) for k in self._rows), key=lambda r: (r.created_ts_ms, r.token_id))

    def _set_revoked(self, token_id, at_ms):
        self._rows[token_id].revoked_ts_ms = at_ms

    def close(self):
        pass


_COLS = "token_id, token_hash, stakeholder, scopes_json, groups_json, created_ts_ms, expires_ts_ms, revoked_ts_ms"


def _row(r) -> TokenRecord:
    return TokenRecord(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5], r[6], r[7])


def connect(url: "str | Path | Database") -> "Database":
    """The portal database (tokens, audit, goal schedules, fleet series), migrated: a SQLite path
    or a ``postgresql://`` URL (portal.db); a `Database` is passed through."""
    if hasattr(url, "execute") and hasattr(url, "dialect"):
        return url
    return open_database(url)


class DbTokenStore(_TokenLogic):
    """Tokens in the portal database (table `token`; SQLite or PostgreSQL, portal.db);
    thread-safe (the database's one connection behind its lock)."""

    def __init__(self, url: "str | Path | Database") -> None:
        self._db = connect(url)
        self.path = self._db.url

    def _insert(self, rec):
        self._db.execute(f"INSERT INTO token ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (rec.token_id, rec.token_hash, rec.stakeholder, json.dumps(list(rec.scopes)),
                          json.dumps(list(rec.groups)), rec.created_ts_ms, rec.expires_ts_ms, None))

    def _get(self, token_id):
        rows = self._db.execute(f"SELECT {_COLS} FROM token WHERE token_id = ?", (token_id,))
        return _row(rows[0]) if rows else None

    def _all(self):
        return [_row(r) for r in self._db.execute(f"SELECT {_COLS} FROM token ORDER BY created_ts_ms, token_id")]

    def _set_revoked(self, token_id, at_ms):
        self._db.execute("UPDATE token SET revoked_ts_ms = ? WHERE token_id = ? AND revoked_ts_ms IS NULL",
                         (at_ms, token_id))

    def close(self):
        self._db.close()


SqliteTokenStore = DbTokenStore      # the name of the SQLite-only version: a path still works
