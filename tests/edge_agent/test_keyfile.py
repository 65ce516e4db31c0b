"""The one key reader (edge_agent.keyfile): hex text or a JSON table, from a file or a config table;
every bad input is one line naming the field, then the file, then the key."""
import json

import pytest

from edge_agent.keyfile import (KeyFileError, MIN_KEY_BYTES, parse_key_table, parse_keys, read_key,
                                read_keys)

A, B = "00" * 16, "11" * 20


@pytest.mark.parametrize("text, expected", [
    (A, {"k1": bytes(16)}),
    (A + "\n", {"k1": bytes(16)}),
    ("  " + A.upper() + " \n", {"k1": bytes(16)}),
    (json.dumps({"a": A, "b": B}), {"a": bytes(16), "b": b"\x11" * 20}),
    ("\n" + json.dumps({"vpp": B}) + "\n", {"vpp": b"\x11" * 20}),
])
def test_parse_keys_good(text, expected):
    assert parse_keys(text, "k1", "--f") == expected


@pytest.mark.parametrize("text, message", [
    ("abcd", "--f: key 'k1': shorter than 16 bytes"),
    ("not hex at all", "--f: key 'k1': not hex"),
    ("0" * 33, "--f: key 'k1': not hex"),
    ("", "--f: key 'k1': shorter than 16 bytes"),
    ("{not json", "--f: not hex, and not a JSON table {key_id: hex}"),
    ("{}", "--f: expected a non-empty table {key_id: hex}"),
    (json.dumps({"a": A, "b": "zz"}), "--f: key 'b': not hex"),
    (json.dumps({"a": 12}), "--f: key 'a': not hex"),
    (json.dumps({"a/b": A}), "--f: key 'a/b': not an identifier"),
    (json.dumps({"a": "ab" * (MIN_KEY_BYTES - 1)}), "--f: key 'a': shorter than 16 bytes"),
    (None, "--f: expected text"),
])
def test_parse_keys_bad_names_field_and_key(text, message):
    with pytest.raises(KeyFileError) as err:
        parse_keys(text, "k1", "--f")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_default_key_id_must_be_an_identifier():
    with pytest.raises(KeyFileError, match="^--f: key 'no id': not an identifier"):
        parse_keys(A, "no id", "--f")


def test_parse_key_table():
    assert parse_key_table({"k2": B, "k1": A}, "security.keys") == {"k1": bytes(16), "k2": b"\x11" * 20}
    for spec, message in (({"k1": "zz"}, "security.keys: key 'k1': not hex"),
                          ({}, "security.keys: expected a non-empty table"),
                          ("k1", "security.keys: expected a non-empty table")):
        with pytest.raises(KeyFileError) as err:
            parse_key_table(spec, "security.keys")
        assert str(err.value).startswith(message)


def test_read_key_and_keys_from_files(tmp_path):
    table = tmp_path / "k.json"
    table.write_text(json.dumps({"b": B, "a": A}))
    hex_file = tmp_path / "k.hex"
    hex_file.write_text(B + "\n")
    assert read_key(str(table), "b", "--hmac-key-file") == ("b", b"\x11" * 20)
    assert read_key(table, "zz", "--hmac-key-file") == ("a", bytes(16))      # first sorted
    assert read_key(str(hex_file), "k7", "--hmac-key-file") == ("k7", b"\x11" * 20)
    assert read_keys(str(table), "ignored", "--dispatch-key-file") == {"a": bytes(16), "b": b"\x11" * 20}
    assert read_keys(str(hex_file), "dispatch", "--dispatch-key-file") == {"dispatch": b"\x11" * 20}


def test_file_errors_name_flag_then_file(tmp_path):
    short = tmp_path / "short.hex"
    short.write_text("abcd")
    with pytest.raises(KeyFileError) as err:
        read_key(str(short), "k1", "--hmac-key-file")
    assert str(err.value) == f"--hmac-key-file: {short}: key 'k1': shorter than 16 bytes"
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"a": A, "b": "abcd"}))
    with pytest.raises(KeyFileError, match=r"^--dispatch-key-file: .*mixed.json: key 'b': shorter"):
        read_key(str(mixed), "a", "--dispatch-key-file")        # every entry is checked
    missing = tmp_path / "none.hex"
    with pytest.raises(KeyFileError) as err:
        read_keys(str(missing), "k1", "security.key_file")
    assert str(err.value).startswith(f"security.key_file: cannot read {missing}: No such file")
