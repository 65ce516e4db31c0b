"""Identities bound to Ed25519 keys (via `cryptography`).

A key id is a short name (`p017`, `meter:p017`, `validator:dso`); the public key is 32 bytes,
written as 64 hex characters.  Simulations derive private keys from the seed
(SHA-256(b"colorgrid.te|" + seed + "|" + label)) so reruns are byte-identical — Ed25519
signatures are deterministic (RFC 8032).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from market.settlement.errors import KeyError_, SignatureError

try:  # libsodium via PyNaCl: the same RFC 8032 signatures, about twice as fast as OpenSSL here
    from nacl.bindings import crypto_sign as _nacl_sign
    from nacl.bindings import crypto_sign_open as _nacl_open
    from nacl.exceptions import BadSignatureError as _NaclBad
except ImportError:  # pragma: no cover - depends on the installation
    _nacl_sign = _nacl_open = None  # type: ignore[assignment]
    _NaclBad = Exception  # type: ignore[misc,assignment]
try:  # the same libsodium functions without PyNaCl's per-call wrapper (checks, allocations, slicing)
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - depends on the installation
    _ffi = _lib = None
BACKEND = "libsodium (PyNaCl)" if _nacl_sign is not None else "OpenSSL (cryptography)"

ROLES = ("operator", "participant", "meter", "validator")


class KeyPair:
    """A named Ed25519 signing key."""

    __slots__ = ("key_id", "_private", "public_bytes", "_sodium_secret")

    def __init__(self, key_id: str, private: Ed25519PrivateKey) -> None:
        if not key_id or not isinstance(key_id, str):
            raise KeyError_(f"key_id must be a non-empty str, got {key_id!r}")
        self.key_id = key_id
        self._private = private
        self.public_bytes = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self._sodium_secret = seed + self.public_bytes  # libsodium's 64-byte secret key layout

    @property
    def public_hex(self) -> str:
        return self.public_bytes.hex()

    def sign(self, message: bytes) -> bytes:
        if _lib is not None:
            return _sign_all([message], self._sodium_secret)[0]
        if _nacl_sign is not None:
            return _nacl_sign(message, self._sodium_secret)[:64]
        return self._private.sign(message)

    def sign_many(self, messages: list[bytes], threads: int = 1) -> list[bytes]:
        """Signatures of `messages` in order (the same bytes as `sign` each: Ed25519 is deterministic).
        With `threads` > 1 the list is split across threads; libsodium runs without the GIL."""
        if _nacl_sign is None:
            sign = self._private.sign
            return [sign(m) for m in messages]
        secret, nacl_sign = self._sodium_secret, _nacl_sign

        def sign_chunk(chunk: list[bytes]) -> list[bytes]:
            if _lib is not None:
                return _sign_all(chunk, secret)
            return [nacl_sign(m, secret)[:64] for m in chunk]

        if threads <= 1 or len(messages) < 256:
            return sign_chunk(messages)
        from concurrent.futures import ThreadPoolExecutor

        size = -(-len(messages) // threads)
        chunks = [messages[i:i + size] for i in range(0, len(messages), size)]
        with ThreadPoolExecutor(len(chunks)) as pool:
            parts = list(pool.map(sign_chunk, chunks))
        return [sig for part in parts for sig in part]

    @classmethod
    def derive(cls, seed: int | str, label: str) -> "KeyPair":
        """Deterministic key for simulations and tests (never for production identities)."""
        material = hashlib.sha256(f"colorgrid.te|{seed}|{label}".encode()).digest()
        return cls(label, Ed25519PrivateKey.from_private_bytes(material))

    @classmethod
    def generate(cls, key_id: str) -> "KeyPair":
        return cls(key_id, Ed25519PrivateKey.generate())


def _sign_all(messages: list[bytes], secret: bytes) -> list[bytes]:
    """libsodium's crypto_sign called directly, its output buffers allocated once per call of this
    function (so threads never share them): the signatures `nacl.bindings.crypto_sign` gives."""
    size = max(map(len, messages), default=0)
    sm = _ffi.new("unsigned char[]", 64 + size)
    smlen = _ffi.new("unsigned long long *")
    sk = secret  # 64 bytes, read only
    sig, sign = _ffi.buffer(sm, 64), _lib.crypto_sign
    out = []
    for m in messages:
        if type(m) is not bytes:
            m = bytes(m)
        if sign(sm, smlen, m, len(m), sk):  # pragma: no cover - libsodium's signing cannot fail
            raise SignatureError("libsodium crypto_sign failed")
        out.append(sig[:])
    return out


def valid_many(items: list[tuple[str, bytes, bytes]]) -> list[bool]:
    """[is_valid(public_hex, signature, message) ...] for (public_hex, signature, message) items,
    through libsodium's crypto_sign_open without PyNaCl's per-call wrapper."""
    if _lib is None or not items:
        return [is_valid(pub, sig, msg) for pub, sig, msg in items]
    size = max(len(msg) for _, _, msg in items) + 64
    out_buf, out_len = _ffi.new("unsigned char[]", size), _ffi.new("unsigned long long *")
    sign_open, public_raw = _lib.crypto_sign_open, _public_raw
    result = []
    for public_hex, sig, msg in items:
        try:
            pk = public_raw(public_hex)
        except KeyError_:
            result.append(False)
            continue
        if type(sig) is not bytes or len(sig) != 64 or type(msg) is not bytes:
            result.append(is_valid(public_hex, sig, msg))
            continue
        sm = sig + msg
        result.append(sign_open(out_buf, out_len, sm, len(sm), pk) == 0)
    return result


@lru_cache(maxsize=65536)
def _public_key(public_hex: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(public_hex)
    except ValueError as exc:
        raise KeyError_(f"public key is not hex: {public_hex[:16]!r}…") from exc
    if len(raw) != 32:
        raise KeyError_(f"public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@lru_cache(maxsize=65536)
def _public_raw(public_hex: str) -> bytes:
    _public_key(public_hex)  # validates
    return bytes.fromhex(public_hex)


def verify(public_hex: str, signature: bytes, message: bytes, what: str = "signature") -> None:
    """Raise SignatureError unless `signature` is a valid Ed25519 signature of `message`."""
    if _nacl_open is not None:
        if len(signature) != 64:
            raise SignatureError(f"{what}: malformed signature (length {len(signature)})")
        public_raw = _public_raw(public_hex)  # KeyError_ for a malformed key, before the try
        try:
            _nacl_open(bytes(signature) + message, public_raw)
        except (_NaclBad, ValueError) as exc:
            raise SignatureError(f"{what}: Ed25519 signature does not verify") from exc
        return
    key = _public_key(public_hex)  # KeyError_ for a malformed key, before the try
    try:
        key.verify(signature, message)
    except InvalidSignature as exc:
        raise SignatureError(f"{what}: Ed25519 signature does not verify") from exc
    except ValueError as exc:  # wrong signature length etc.
        raise SignatureError(f"{what}: malformed signature ({exc})") from exc


def is_valid(public_hex: str, signature: bytes, message: bytes) -> bool:
    try:
        verify(public_hex, signature, message)
    except (SignatureError, KeyError_):
        return False
    return True


class KeyRegistry:
    """key_id -> (role, public_hex, owner).  A meter key's owner is the participant it meters."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, str, str]] = {}

    def register(self, key_id: str, role: str, public_hex: str, owner: str = "") -> None:
        if role not in ROLES:
            raise KeyError_(f"key {key_id!r}: role {role!r} not in {ROLES}")
        _public_key(public_hex)  # validates length/hex
        if key_id in self._keys and self._keys[key_id][1] != public_hex:
            raise KeyError_(f"key {key_id!r} already registered with a different public key")
        self._keys[key_id] = (role, public_hex, owner)

    def public_hex(self, key_id: str, role: str | None = None) -> str:
        entry = self._keys.get(key_id)
        if entry is None:
            raise KeyError_(f"key {key_id!r} is not registered")
        if role is not None and entry[0] != role:
            raise KeyError_(f"key {key_id!r} has role {entry[0]!r}, expected {role!r}")
        return entry[1]

    def owner(self, key_id: str) -> str:
        return self._keys[key_id][2]

    def role(self, key_id: str) -> str:
        return self._keys[key_id][0]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def ids(self, role: str | None = None) -> list[str]:
        return sorted(k for k, v in self._keys.items() if role is None or v[0] == role)
