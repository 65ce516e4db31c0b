"""Key files and key tables: the one reader of HMAC keys (agent, controller, dispatch, fleet).

Two spellings of a key set:

| form       | example                                   | key ids                           |
|------------|-------------------------------------------|-----------------------------------|
| hex text   | ``000102...1f`` (a trailing newline is ok) | the one given (``default_key_id``) |
| JSON table | ``{"k1": "0001...", "vpp": "7676..."}``    | the table's, every entry checked   |

and, already parsed (a TOML ``[security] keys = {...}`` table, a ``config.json``), a table
``{key_id: hex}`` (``parse_key_table``). Every key is hex of at least ``MIN_KEY_BYTES`` bytes and
every key id an identifier (``topics.valid_id``: it travels in signed messages). Any error raises
``KeyFileError`` (a ValueError) with one line that starts with the field (a flag or a config key),
then the file, then the key: ``--hmac-key-file: /etc/k.json: key 'a': shorter than 16 bytes``.
MicroPython-compatible (json, binascii, open).
"""
import binascii
import json

from edge_agent import topics

MIN_KEY_BYTES = 16


class KeyFileError(ValueError):
    """A key file or key table that cannot be used; the message starts with the field."""


def _key_bytes(hex_text, key_id, where: str) -> bytes:
    if not topics.valid_id(key_id):
        raise KeyFileError("%skey %r: not an identifier (1..64 chars of A-Z a-z 0-9 _ . -)"
                           % (where, key_id))
    if not isinstance(hex_text, str):
        raise KeyFileError("%skey %r: not hex" % (where, key_id))
    try:
        key = binascii.unhexlify(hex_text.strip())
    except (ValueError, TypeError):
        raise KeyFileError("%skey %r: not hex" % (where, key_id))
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError("%skey %r: shorter than %d bytes" % (where, key_id, MIN_KEY_BYTES))
    return key


def _table(spec, where: str) -> dict:
    if not isinstance(spec, dict) or not spec:
        raise KeyFileError("%sexpected a non-empty table {key_id: hex}" % (where,))
    keys = {}
    for key_id in sorted(spec):
        keys[key_id] = _key_bytes(spec[key_id], key_id, where)
    return keys


def parse_key_table(spec, field: str) -> dict:
    """``{key_id: hex}`` (already parsed config) -> ``{key_id: bytes}``."""
    return _table(spec, field + ": ")


def _parse(text, default_key_id, where: str) -> dict:
    if not isinstance(text, str):
        raise KeyFileError("%sexpected text, got %r" % (where, text))
    text = text.strip()
    if not text.startswith("{"):
        return {default_key_id: _key_bytes(text, default_key_id, where)}
    try:
        spec = json.loads(text)
    except ValueError:
        raise KeyFileError("%snot hex, and not a JSON table {key_id: hex}" % (where,))
    return _table(spec, where)


def parse_keys(text, default_key_id, field: str) -> dict:
    """Hex text (-> ``{default_key_id: key}``) or a JSON table (-> every key) -> ``{key_id: bytes}``."""
    return _parse(text, default_key_id, field + ": ")


def _read_text(path, field: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise KeyFileError("%s: cannot read %s: %s" % (field, path, reason))


def read_keys(path, key_id, field: str) -> dict:
    """Every key of the file at ``path`` (hex text: ``{key_id: key}``) -> ``{key_id: bytes}``."""
    return _parse(_read_text(path, field), key_id, "%s: %s: " % (field, path))


def read_key(path, key_id, field: str) -> tuple:
    """``(key_id, key)`` from the file at ``path``; a JSON table without ``key_id`` gives its first
    key id in sorted order (every entry is checked all the same)."""
    keys = read_keys(path, key_id, field)
    if key_id not in keys:
        key_id = sorted(keys)[0]
    return key_id, keys[key_id]
