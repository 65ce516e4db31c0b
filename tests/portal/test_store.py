"""The portal store on both databases — SQLite (a file) and the local PostgreSQL (127.0.0.1:5432,
database `test`, one fresh schema per test, dropped after) — through one contract: migrations,
tokens (revocation seen by another connection), audit, goal schedules and dispatch ids, the fleet
time series copied from rounds.csv and its retention on a simulated clock."""
import secrets

import pytest

from portal.db import MIGRATIONS, StoreError, migrate, open_database, schema_version
from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder
from portal.series import DAY_MS, Retention, SeriesJob, SeriesRecorder
from portal.store import DbPortalStore, SeriesRow
from portal.tokens import DbTokenStore
from tests.portal.conftest import NOW, write_registry, write_rounds

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        import psycopg
        psycopg.connect(PG, connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "portal.db")
        return
    if not _pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (database test, trust auth)")
    import psycopg

    schema = f"portal_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_migrations_apply_once_and_upgrade_an_older_database(url):
    db = open_database(url, migrate_now=False)
    assert migrate(db, upto=1) == [1]
    assert schema_version(db) == 1
    db.execute("INSERT INTO audit (ts_ms, stakeholder, token_id, action, target, outcome, detail_json) "
               "VALUES (1, 'a', '-', 'x', 'y', 'ok', '{}')")
    assert migrate(db) == [v for v, _, _ in MIGRATIONS][1:]          # the newer ones only
    assert migrate(db) == []
    assert schema_version(db) == MIGRATIONS[-1][0]
    assert db.execute("SELECT COUNT(*) FROM audit")[0][0] == 1       # data kept across the upgrade
    db.close()
    again = open_database(url)                                        # a second process: nothing to do
    assert schema_version(again) == MIGRATIONS[-1][0]
    again.close()


def test_tokens_audit_and_schedules(url):
    tokens, other = DbTokenStore(url), DbTokenStore(url)             # two connections (two processes)
    token, rec = tokens.create("dso", ["fleet:read"], 3600, ["671.1"], at_ms=NOW)
    assert other.authenticate(token, NOW + 1).record.stakeholder == "dso"
    assert other.authenticate(token, NOW + 3_600_000).reason == "expired"
    other.revoke(rec.token_id, NOW + 2)
    assert tokens.authenticate(token, NOW + 3).reason == "revoked"   # seen on the very next call
    store = DbPortalStore(url)
    a1 = store.audit(NOW, "dso", rec.token_id, "goal.submit", "group:671.1", "201", {"n": 1})
    a2 = store.audit(NOW + 5, "dso", rec.token_id, "goal.cancel", "schedule:1", "200")
    assert a2 > a1 and [r["action"] for r in store.audit_log()] == ["goal.cancel", "goal.submit"]
    assert store.audit_log(stakeholder="nobody") == []
    assert store.next_dispatch_id("671.1", 100) == 100
    assert store.next_dispatch_id("671.1", 50) == 101                # above every id used
    assert store.next_dispatch_id("671.1", 500) == 500
    assert store.last_dispatch_id("671.1") == 500 and store.last_dispatch_id("x") == -1
    s1 = store.add_schedule("dso", rec.token_id, "671.1", 500, [(NOW, 5.0)], NOW, NOW + 60_000, "active", True, "{}")
    s2 = store.add_schedule("dso", rec.token_id, "671.1", 501, [(NOW, 4.0)], NOW, NOW + 60_000, "active", True, "{}")
    assert store.schedule(s1.schedule_id).status == "superseded" and s2.status == "active"
    assert s2.points == [(NOW, 4.0)]
    store.set_status(s2.schedule_id, "cancelled", NOW + 9, 502)
    assert store.schedule(s2.schedule_id).cancel_dispatch_id == 502
    assert [s.schedule_id for s in store.schedules("dso", "671.1")] == [s1.schedule_id, s2.schedule_id]
    for s in (tokens, other, store):
        s.close()


def test_series_rows_and_retention_on_a_simulated_clock(url):
    store = DbPortalStore(url)
    rows = [SeriesRow("671.1", r, NOW + r * DAY_MS // 4, 10.0, 10.0 + r, 2, 2, 0, 0, False, [1.0, 2.0, 7.0 + r])
            for r in range(12)]                                       # three days of rows, 6 h apart
    assert store.add_series(rows) == 12
    store.add_series(rows[:3])                                        # written twice: kept once
    got = store.series("671.1")
    assert [r.round_id for r in got] == list(range(12))
    assert got[5].tracking_error_kw == 5.0 and got[5].enabled_kw == [1.0, 2.0, 12.0]
    assert store.last_series_round() == {"671.1": 11}
    store.audit(NOW, "a", "-", "x", "y", "ok")
    store.audit(NOW + 3 * DAY_MS, "a", "-", "x", "y", "ok")
    clock = {"ms": NOW + 2 * DAY_MS}
    job = SeriesJob(None, store, Retention(series_days=1.0, audit_days=2.0), lambda: clock["ms"], prune_every_s=3600)
    job.step()                                                        # keeps [now - 1 day, ...)
    assert [r.round_id for r in store.series()] == list(range(4, 12))
    assert job.pruned == {"fleet_series": 4, "audit": 0}
    clock["ms"] += 30 * 60_000
    job.step()                                                        # not an hour since: no pruning
    assert job.pruned["fleet_series"] == 4
    clock["ms"] = NOW + 2 * DAY_MS + 3_600_000 + 1
    job.step()
    assert [r.round_id for r in store.series()] == list(range(5, 12))
    assert job.pruned["audit"] == 1 and len(store.audit_log()) == 1
    assert [r.round_id for r in store.series(since_ts_ms=NOW + 2 * DAY_MS, until_ts_ms=NOW + 3 * DAY_MS)] == [8, 9, 10, 11]
    store.close()


def test_recorder_copies_rounds_csv_with_the_command_log_times(url, tmp_path):
    write_registry(tmp_path / "registry.db")
    (tmp_path / "res").mkdir()
    write_rounds(tmp_path / "res" / "rounds.csv")
    fleet = FleetView(ReadOnlyRegistry(tmp_path / "registry.db"), ResultsFolder(tmp_path / "res"))
    store = DbPortalStore(url)
    rec = SeriesRecorder(fleet, store)
    assert rec.record() == 4
    assert rec.record() == 0                                          # nothing new
    got = {(r.group, r.round_id): r for r in store.series()}
    # rounds 100, 101 were sent at NOW - 4000 and NOW - 2000 (conftest's command log)
    assert got[("671.1", 100)].ts_ms == NOW - 4000 and got[("671.1", 101)].ts_ms == NOW - 2000
    assert got[("671.2", 101)].tracking_error_kw == pytest.approx(0.5)
    assert got[("671.1", 100)].enabled_kw == [5.5, 10.0, 16.0] and got[("671.2", 100)].n_fail_safe == 1
    with (tmp_path / "res" / "rounds.csv").open("a") as fh:          # the controller appends a round
        fh.write("204.0,102,671.1,30.0,schedule,30.0,False,29.0,False,1,1,0,0,5.5,10.0,13.5,0,0,1,0.1,0,0\n")
    assert rec.record() == 1
    assert store.series("671.1")[-1].ts_ms == NOW and store.series("671.1")[-1].tracking_error_kw == -1.0
    # a controller restart: rounds.csv continues with t_s from 0 again; the command log times it
    from cloud.registry import SqliteRegistry

    reg = SqliteRegistry(tmp_path / "registry.db")
    reg.log_command(103, "671.1", NOW + 50_000, NOW + 56_000, '{"p_on":[0,0,1],"p_off":[0,0,0],"round_id":103}')
    reg.close()
    with (tmp_path / "res" / "rounds.csv").open("a") as fh:
        fh.write("2.0,103,671.1,30.0,schedule,30.0,False,30.5,False,1,1,0,0,5.5,10.0,15.0,0,0,1,0,0,0\n")
    assert rec.record() == 1
    assert store.series("671.1")[-1].round_id == 103 and store.series("671.1")[-1].ts_ms == NOW + 50_000
    assert SeriesRecorder(fleet, store).record() == 0                # a restarted portal resumes
    store.close()


def test_a_bad_database_url_names_it(tmp_path):
    with pytest.raises(StoreError, match="mysql://"):
        open_database("mysql://x/y")
    with pytest.raises(StoreError, match="cannot connect"):
        open_database("postgresql://nobody:secret@127.0.0.1:1/none")
    try:
        open_database("postgresql://nobody:secret@127.0.0.1:1/none")
    except StoreError as exc:
        assert "secret" not in str(exc)
    (tmp_path / "junk.db").write_text("not a database, long enough to be read as a header" * 10)
    with pytest.raises(StoreError):
        open_database(str(tmp_path / "junk.db"))


def test_token_cli_on_either_database(url, capsys):
    from colorgrid.cli import main

    assert main(["token", "create", "--db", url, "--stakeholder", "tso", "--scope", "market:read", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert DbTokenStore(url).authenticate(token).record.stakeholder == "tso"
    assert main(["token", "revoke", token, "--db", url]) == 0
    assert DbTokenStore(url).authenticate(token).reason == "revoked"
    assert [a["action"] for a in DbPortalStore(url).audit_log()] == ["token.revoke", "token.create"]
    capsys.readouterr()
    assert main(["token", "list", "--db", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--db" in err and "Traceback" not in err


def test_serve_on_either_database_as_a_process(url, tmp_path, capsys):
    import os
    import re
    import subprocess
    import sys
    import time

    import httpx

    from colorgrid.cli import main

    write_registry(tmp_path / "registry.db")
    (tmp_path / "res").mkdir()
    write_rounds(tmp_path / "res" / "rounds.csv")
    assert main(["token", "create", "--db", url, "--stakeholder", "dso", "--scope", "fleet:read", "--group", "*",
                 "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorgrid", "serve", "--db", url, "--registry", str(tmp_path / "registry.db"),
         "--results", str(tmp_path / "res"), "--port", "0", "--log-level", "warning", "--record-every-s", "0.2",
         "--retention-days", "36500"],                 # conftest's rounds are of 2023: kept
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        base, auth = f"http://127.0.0.1:{m.group(1)}", {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(base + "/v1/fleet/series", headers=auth, timeout=5)
                if r.status_code == 200 and r.json()["total"] == 4:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the series was not recorded"
            time.sleep(0.2)
        assert [(row["group"], row["round_id"]) for row in r.json()["rows"]] == \
            [("671.1", 100), ("671.2", 100), ("671.1", 101), ("671.2", 101)]
        assert len(DbPortalStore(url).series()) == 4                  # in the store, not only in memory
        assert main(["token", "revoke", token, "--db", url]) == 0
        assert httpx.get(base + "/v1/fleet/groups", headers=auth, timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
