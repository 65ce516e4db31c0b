"""Every `colorgrid` command, given a user's mistake — a missing file, an empty file, a non-finite
number, a negative count, an unknown option (and the cases issue 16 found) — exits 2 with ONE
line on stderr that names the flag or field, and never a traceback."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from colorgrid.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]
KEY = "00112233445566778899aabbccddeeff"
BROKER = "mqtt://127.0.0.1:1"  # never reached: every case fails before connecting

def files(tmp: Path) -> dict[str, str]:
    (tmp / "empty").write_text("")
    (tmp / "comment.dss").write_text("! nothing but a comment\n")
    (tmp / "key.hex").write_text(KEY + "\n")
    (tmp / "gateway.toml").write_text("[gateway]\nid = 'gw-1'\n")
    (tmp / "nan_signal.csv").write_text("0.1\nnan\n")
    return {"missing": str(tmp / "missing.file"), "empty": str(tmp / "empty"), "comment": str(tmp / "comment.dss"),
            "key": str(tmp / "key.hex"), "gw": str(tmp / "gateway.toml"), "nan_signal": str(tmp / "nan_signal.csv")}


# (command line with {placeholders}, text the one line must contain)
CASES = {
    "demo": [
        ("demo --goal file:{missing}", "--goal"),
        ("demo --goal file:{empty}", "--goal"),
        ("demo --minutes nan", "--minutes"),
        ("demo --gateways -1", "--gateways"),
        ("demo --speed -2", "--speed"),
        ("demo --bogus", "--bogus"),
    ],
    "simulate": [
        ("simulate --signal {missing}", "--signal"),
        ("simulate --signal {empty}", "--signal"),
        ("simulate --config {empty}", "--config"),
        ("simulate --base nan", "--base"),
        ("simulate --devices -5", "devices"),
        ("simulate --seed -1", "seed"),
        ("simulate --tiers 1", "tiers"),
        ("simulate --devices 100 --duration-s 10 --signal {nan_signal}", "signal"),
        ("simulate --bogus", "--bogus"),
    ],
    "powerflow": [
        ("powerflow {missing}", "FEEDER.dss"),
        ("powerflow {empty}", "FEEDER.dss"),
        ("powerflow {comment}", "defines no circuit"),
        ("powerflow --tol-pu nan", "--tol-pu"),
        ("powerflow --tol-pu 0", "--tol-pu"),
        ("powerflow --tol-pu -1", "--tol-pu"),
        ("powerflow --max-iter -3", "--max-iter"),
        ("powerflow --feeder ieee999", "--feeder"),
        ("powerflow --bogus", "--bogus"),
    ],
    "te": [
        ("te run --dlmp-csv {missing}", "--dlmp-csv"),
        ("te run --dlmp-csv {empty}", "--dlmp-csv"),
        ("te run --dlmp-csv {comment}", "--dlmp-csv"),
        ("te run --grid-sell-usd-per-mwh nan", "--grid-sell-usd-per-mwh"),
        ("te run --participants -1", "--participants"),
        ("te run --k abc", "--k"),
        ("te run --pv-share 2", "--pv-share"),
        ("te run --threshold-k 0", "--threshold-k"),
        ("te run --penalty-uusd-per-kwh -1", "--penalty-uusd-per-kwh"),
        ("te run --bogus", "--bogus"),
    ],
    "ledger": [
        ("ledger verify {missing}", "PATH"),
        ("ledger verify {empty}", "PATH"),
        ("ledger verify {empty} --workers nan", "--workers"),
        ("ledger verify {empty} --workers -1", "--workers"),
        ("ledger verify {empty} --trusted-operator-key zz", "--trusted-operator-key"),
        ("ledger prove {empty} -1", "seq"),
        ("ledger verify {empty} --bogus", "--bogus"),
    ],
    "agent": [
        ("agent --config {missing}", "--config"),
        ("agent --config {empty}", "--config"),
        ("agent --config {gw} --duration-s nan", "--duration-s"),
        ("agent --config {gw} --duration-s -1", "--duration-s"),
        ("agent --config {gw} --bogus", "--bogus"),
    ],
    "controller": [
        (f"controller --broker {BROKER} --hmac-key-file {{missing}}", "--hmac-key-file"),
        (f"controller --broker {BROKER} --hmac-key-file {{empty}}", "--hmac-key-file"),
        (f"controller --broker {BROKER} --hmac-key-file {{key}} --round-s nan", "--round-s"),
        (f"controller --broker {BROKER} --hmac-key-file {{key}} --round-s -2", "--round-s"),
        (f"controller --broker mqtt://127.0.0.1:99999 --hmac-key-file {{key}}", "port"),
        (f"controller --broker {BROKER} --hmac-key-file {{key}} --goal constant:abc", "--goal"),
        (f"controller --broker {BROKER} --hmac-key-file {{key}} --bogus", "--bogus"),
    ],
    "aggregator": [
        (f"aggregator --region n --broker {BROKER} --hmac-key-file {{missing}} --prefix n-", "--hmac-key-file"),
        (f"aggregator --region n --broker {BROKER} --hmac-key-file {{key}}", "--prefix"),
        (f"aggregator --region n --broker {BROKER} --hmac-key-file {{key}} --regions {{empty}}", "--regions"),
        (f"aggregator --region n/x --broker {BROKER} --hmac-key-file {{key}} --prefix n-", "--region"),
        (f"aggregator --region n --broker {BROKER} --hmac-key-file {{key}} --prefix n- --round-s nan", "--round-s"),
        (f"aggregator --region n --broker mqtt://127.0.0.1:99999 --hmac-key-file {{key}} --prefix n-", "port"),
    ],
    "fleet": [
        (f"fleet --broker {BROKER} --hmac-key-file {{missing}}", "--hmac-key-file"),
        (f"fleet --broker {BROKER} --hmac-key-file {{empty}}", "--hmac-key-file"),
        (f"fleet --broker {BROKER} --hmac-key-file {{key}} --speed nan", "--speed"),
        (f"fleet --broker {BROKER} --hmac-key-file {{key}} --gateways -1", "--gateways"),
        (f"fleet --broker {BROKER} --hmac-key-file {{key}} --bogus", "--bogus"),
    ],
    "dispatch": [
        (f"dispatch --broker {BROKER} --group g0 --point 0:4 --hmac-key-file {{missing}}", "--hmac-key-file"),
        (f"dispatch --broker {BROKER} --group g0 --point 0:4 --hmac-key-file {{empty}}", "--hmac-key-file"),
        (f"dispatch --broker {BROKER} --group g0 --hmac-key-file {{key}} --schedule {{empty}}", "--schedule"),
        (f"dispatch --broker {BROKER} --group g0 --point 0:4 --hmac-key-file {{key}} --valid-for-s nan",
         "--valid-for-s"),
        (f"dispatch --broker {BROKER} --group g0 --point 0:4 --hmac-key-file {{key}} --dispatch-id -1",
         "--dispatch-id"),
        (f"dispatch --broker {BROKER} --group g0 --point 0:4 --hmac-key-file {{key}} --bogus", "--bogus"),
    ],
    "portal": [  # more in tests/portal/test_cli.py
        ("portal --registry {missing}", "--registry"),
        ("portal --registry {empty}", "--registry"),
        ("portal --registry {key} --port nan", "--port"),
        ("portal --registry {key} --port -1", "--port"),
        ("portal --registry {key} --bogus", "--bogus"),
    ],
    "serve": [  # more in tests/portal/test_cli.py
        ("serve --registry {missing}", "--registry"),
        ("serve --registry {empty}", "--registry"),
        ("serve --registry {key} --port nan", "--port"),
        ("serve --registry {key} --retention-days -1", "--retention-days"),
        ("serve --registry {key} --bogus", "--bogus"),
    ],
    "export": [  # more in tests/colorgrid/test_cli_export.py
        ("export --what tracking --db {missing} --out {missing}", "--db"),
        ("export --what market --results {missing} --out {missing}", "--results"),
        ("export --what settlement --ledger {empty} --out {missing}", "--ledger"),
        ("export --what nope --out {missing}", "--what"),
        ("export --what tracking --since-ts-ms nan --out {missing}", "--since-ts-ms"),
        ("export --what tracking --out {missing} --bogus", "--bogus"),
    ],
    "token": [  # more in tests/portal/test_cli.py
        ("token create --stakeholder dso --scope admin --ttl nan --db {missing}", "--ttl"),
        ("token create --stakeholder dso --scope admin --ttl -1 --db {missing}", "--ttl"),
        ("token create --stakeholder dso --scope root --ttl 60 --db {missing}", "--scope"),
        ("token revoke nonsense --db {empty}", "TOKEN|ID"),
        ("token list --bogus", "--bogus"),
    ],
    "market": [  # more in tests/colorgrid/test_cli_market.py
        ("market offers --feeder {missing} --out {missing}", "--feeder"),
        ("market offers --feeder ieee13 --seed -1 --out {missing}", "--seed"),
        ("market clear --feeder ieee13 --offers {missing} --out {missing}", "--offers"),
        ("market clear --feeder ieee13 --offers {empty} --out {missing}", "--offers"),
        ("market clear --feeder ieee13 --offers {key} --horizon rtm --out {missing}", "--offers"),
        ("market clear --feeder ieee13 --horizon bogus --offers {missing} --out {missing}", "--horizon"),
        ("market clear --feeder ieee13 --offers {key} --bogus --out {missing}", "--bogus"),
    ],
    "vpp": [  # more in tests/colorgrid/test_cli_vpp.py
        ("vpp ingest --portfolio {missing} --db {missing} --rounds {key}", "--portfolio"),
        ("vpp ingest --portfolio {key} --db {missing} --rounds {empty}", "--rounds"),
        ("vpp ingest --portfolio {key} --db {missing} --rounds {key}", "--portfolio"),
        ("vpp curve --portfolio {key} --db {missing} --out {missing}", "--db"),
        ("vpp curve --portfolio {key} --db {key} --confidence 2 --out {missing}", "--confidence"),
        ("vpp dispatch --portfolio {key} --curves {key} --schedule {key} --hmac-key-file {empty} --out {missing}",
         "--hmac-key-file"),
        ("vpp dispatch --portfolio {key} --curves {key} --schedule {key} --hmac-key-file {key} --bogus --out x",
         "--bogus"),
    ],
    "day": [  # more in tests/colorgrid/test_cli_day.py
        ("day --feeder {missing} --out {missing}", "--feeder"),
        ("day --iso-price {empty} --out {missing}", "--iso-price"),
        ("day --iso-price {key} --out {missing}", "--iso-price"),
        ("day --devices 0 --out {missing}", "--devices"),
        ("day --confidence nan --out {missing}", "--confidence"),
        ("day --sim-s-per-interval 10 --out {missing}", "--sim-s-per-interval"),
        ("day --bogus", "--bogus"),
    ],
}
ROWS = [case for cmd in CASES for case in CASES[cmd]]


def test_every_command_is_in_the_table():
    assert set(CASES) == set(COMMANDS)


def _id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("line, names", ROWS, ids=[_id(r).split(" --broker")[0] + " " + _id(r).split()[-1]
                                                    for r in ROWS])
def test_user_mistake_is_one_line_on_stderr_and_exit_2(tmp_path, capsys, line, names):
    argv = [part.format(**files(tmp_path)) for part in line.split()]
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"colorgrid {argv[0]}"), err
    assert names in lines[0], err
    assert "Traceback" not in err + out and "error" not in out.lower(), out


def test_no_traceback_from_the_installed_command(tmp_path):
    """The same through a real process: what a user sees (three representative mistakes)."""
    f = files(tmp_path)
    for argv, names in ((["powerflow", f["comment"]], "defines no circuit"),
                        (["te", "run", "--grid-sell-usd-per-mwh", "nan"], "--grid-sell-usd-per-mwh"),
                        (["te", "run", "--dlmp-csv", f["missing"]], "--dlmp-csv")):
        proc = subprocess.run([sys.executable, "-m", "colorgrid", *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and names in proc.stderr, proc.stderr


def test_corrupt_ledger_file_names_the_last_verifiable_entry(tmp_path, capsys):
    assert main(["te", "run", "--participants", "10", "--intervals", "8", "--out", str(tmp_path / "te")]) == 0
    capsys.readouterr()
    path = tmp_path / "te" / "ledger.sqlite"
    with sqlite3.connect(path) as db:  # fold the WAL into the file, so the file alone is the ledger
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        n_entries = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    middle = len(data) // page // 2
    data[middle * page:(middle + 1) * page] = bytes(page)  # a zeroed page inside the entries table
    bad = tmp_path / "zeroed.sqlite"
    bad.write_bytes(bytes(data))
    assert main(["ledger", "verify", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ledger file corrupt" in err, err
    last = int(err.rsplit("the last verifiable entry is ", 1)[1])
    assert 0 < last < n_entries - 1
    assert main(["ledger", "prove", str(bad), "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ledger file corrupt" in err, err


def test_help_lists_every_command_with_its_description(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    from colorgrid.cli import _load

    for name in COMMANDS:
        help_line = [ln for ln in out.splitlines() if ln.split()[:1] == [name]]
        assert help_line and _load(name).HELP in help_line[0], (name, out)


def test_powerflow_help_lists_the_shipped_feeders(capsys):
    from market.network.data import FEEDERS

    assert main(["powerflow", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FEEDERS) and "--feeder" in out


def test_te_help_names_no_command_that_does_not_exist(capsys):
    assert main(["te", "run", "--help"]) == 0
    out = capsys.readouterr().out
    for word in out.split("`colorgrid ")[1:]:
        assert word.split()[0].strip("`") in COMMANDS, out
    assert "market clear" not in out
