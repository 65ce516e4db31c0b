"""`colorgrid export`: tracking from the portal store, market tables from a results folder,
settlement from a ledger — CSV and Parquet of the same data, read back and compared cell by
cell with each other and with what went in; bad flags give one line and exit 2."""
import csv
import json

import pytest

from colorgrid.cli import main
from portal.store import DbPortalStore, SeriesRow
from tests.portal.conftest import NOW, write_market

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow not installed")


def read_csv(path):
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def same(csv_cell: str, value) -> bool:
    if value is None:
        return csv_cell == ""
    if isinstance(value, bool):
        return csv_cell == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return float(csv_cell) == float(value)
    return csv_cell == value


def export_both(tmp_path, *flags):
    for fmt in ("csv", "parquet"):
        assert main(["export", *flags, "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
    return tmp_path / "csv", tmp_path / "parquet"


def assert_same_tables(csv_dir, pq_dir, names):
    for name in names:
        header, rows = read_csv(csv_dir / f"{name}.csv")
        table = pq.read_table(pq_dir / f"{name}.parquet")
        assert table.column_names == header
        back = table.to_pylist()
        assert len(back) == len(rows)
        for got, row in zip(back, rows):
            for col, cell in zip(header, row):
                assert same(cell, got[col]), (name, col, cell, got[col])
    summary = json.loads((pq_dir / "summary.json").read_text())
    assert sorted(summary["files"]) == sorted([f"{n}.parquet" for n in names] + ["summary.json"])


def test_tracking_from_the_store(tmp_path):
    db = tmp_path / "portal.db"
    store = DbPortalStore(db)
    rows = [SeriesRow(g, r, NOW + 2000 * r, 30.0 + r, 31.5 + 0.25 * r, 3, 3 - (r == 2), int(r == 2), 0, r == 4,
                      [5.5, 10.0, 16.0 + 0.25 * r]) for r in range(6) for g in ("671.1", "671.2")]
    store.add_series(rows)
    store.close()
    csv_dir, pq_dir = export_both(tmp_path, "--what", "tracking", "--db", str(db), "--group", "671.1")
    assert_same_tables(csv_dir, pq_dir, ["tracking"])
    table = pq.read_table(pq_dir / "tracking.parquet")
    assert str(table.schema.field("ts_ms").type) == "int64" and str(table.schema.field("saturated").type) == "bool"
    back = table.to_pylist()
    assert [r["round_id"] for r in back] == list(range(6)) and {r["group"] for r in back} == {"671.1"}
    for r in back:                               # the reference: what went into the store
        i = r["round_id"]
        assert r["ts_ms"] == NOW + 2000 * i and r["goal_kw"] == 30.0 + i
        assert r["tracking_error_kw"] == pytest.approx(1.5 - 0.75 * i)
        assert r["enabled_t2_kw"] == 16.0 + 0.25 * i and r["n_missing"] == int(i == 2)
    assert json.loads((csv_dir / "summary.json").read_text())["figures"]["tracking_rows"] == 6


def test_market_and_settlement(tmp_path):
    folder = tmp_path / "res"
    write_market(folder)
    (folder / "dlmp.csv").write_text("bus,phase,interval,dlmp_usd_per_mwh,energy,loss,congestion,voltage\n"
                                     "671,1,0,41.25,40,1.25,0,0\n671,2,0,40.5,40,0.5,0,0\n675,3,1,,40,0,0,0\n")
    csv_dir, pq_dir = export_both(tmp_path / "m", "--what", "market", "--results", str(folder))
    assert_same_tables(csv_dir, pq_dir, ["dlmp", "trades", "intervals"])
    dlmp = pq.read_table(pq_dir / "dlmp.parquet").to_pylist()
    assert [r["dlmp_usd_per_mwh"] for r in dlmp] == [41.25, 40.5, None]
    assert str(pq.read_table(pq_dir / "dlmp.parquet").schema.field("energy").type) == "int64"
    csv_dir, pq_dir = export_both(tmp_path / "s", "--what", "settlement", "--results", str(folder))
    assert_same_tables(csv_dir, pq_dir, ["ledger_entries", "ledger_checkpoints"])
    entries = pq.read_table(pq_dir / "ledger_entries.parquet").to_pylist()
    assert [e["seq"] for e in entries] == list(range(len(entries))) and len(entries) >= 4
    kinds = [e["kind"] for e in entries]
    assert "meter_reading" in kinds and any("mint" in k for k in kinds), kinds
    assert json.loads(entries[0]["body_json"])["payload"]["ledger_id"] == "portal-test"      # the genesis
    reading = json.loads(next(e["body_json"] for e in entries if e["kind"] == "meter_reading"))
    assert reading["payload"]["export_wh"] == 1000 and reading["payload"]["participant_id"] == "p1"
    cps = pq.read_table(pq_dir / "ledger_checkpoints.parquet").to_pylist()
    assert [(c["period"], c["first_seq"], c["last_seq"]) for c in cps] == [(1, 0, entries[-1]["seq"])]
    assert json.loads(cps[0]["statement_json"])["tree_size"] == len(entries)


@pytest.mark.parametrize("argv, flag", [
    (["export", "--what", "tracking", "--db", "missing.db", "--out", "o"], "--db"),
    (["export", "--what", "tracking", "--db", "mysql://x", "--out", "o"], "--db"),
    (["export", "--what", "market", "--out", "o"], "--results"),
    (["export", "--what", "market", "--results", "nowhere", "--out", "o"], "--results"),
    (["export", "--what", "market", "--results", ".", "--out", "o"], "--results"),
    (["export", "--what", "settlement", "--ledger", "none.sqlite", "--out", "o"], "--ledger"),
    (["export", "--what", "prices", "--out", "o"], "--what"),
    (["export", "--what", "tracking", "--format", "xlsx", "--out", "o"], "--format"),
])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err, err


def test_tracking_from_a_postgresql_store(tmp_path):
    import secrets

    psycopg = pytest.importorskip("psycopg")
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        psycopg.connect(pg, connect_timeout=3).close()
    except psycopg.Error:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    schema = f"export_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{pg}?options=-csearch_path%3D{schema}"
    try:
        store = DbPortalStore(url)
        store.add_series([SeriesRow("g0", r, NOW + 2000 * r, 10.0, 9.5 + r, 4, 4, 0, 0, False, [1.0, 2.0, 6.5 + r])
                          for r in range(5)])
        store.close()
        csv_dir, pq_dir = export_both(tmp_path, "--what", "tracking", "--db", url, "--since-ts-ms", str(NOW + 2000))
        assert_same_tables(csv_dir, pq_dir, ["tracking"])
        back = pq.read_table(pq_dir / "tracking.parquet").to_pylist()
        assert [r["round_id"] for r in back] == [1, 2, 3, 4]
        assert [r["tracking_error_kw"] for r in back] == [0.5, 1.5, 2.5, 3.5]
    finally:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
