"""`colorgrid token …` and `colorgrid portal` from the command line; the portal as a real process."""
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from colorgrid.cli import main
from portal.store import SqlitePortalStore
from portal.tokens import SqliteTokenStore
from tests.portal.conftest import KEY, write_market, write_registry, write_rounds


def create(db, *flags, capsys):
    assert main(["token", "create", "--db", str(db), *flags]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_token_create_list_revoke(tmp_path, capsys):
    db = tmp_path / "portal.db"
    token = create(db, "--stakeholder", "dso", "--scope", "fleet:read", "--scope", "goals:write",
                   "--group", "671.1", "--ttl", "3600", capsys=capsys)
    assert re.fullmatch(r"cgp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    rec = SqliteTokenStore(db).authenticate(token).record
    assert rec.stakeholder == "dso" and rec.scopes == ("fleet:read", "goals:write") and rec.groups == ("671.1",)
    assert main(["token", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert rec.token_id in listing and "active" in listing and token not in listing and rec.token_hash not in listing
    assert main(["token", "revoke", token, "--db", str(db)]) == 0
    assert SqliteTokenStore(db).authenticate(token).reason == "revoked"
    assert [a["action"] for a in SqlitePortalStore(db).audit_log()] == ["token.revoke", "token.create"]


@pytest.mark.parametrize("argv, flag", [
    (["token", "create", "--stakeholder", "dso", "--scope", "root", "--ttl", "60"], "--scope"),
    (["token", "create", "--stakeholder", "a b", "--scope", "admin", "--ttl", "60"], "--stakeholder"),
    (["token", "create", "--stakeholder", "dso", "--scope", "admin", "--ttl", "0"], "--ttl"),
    (["token", "create", "--stakeholder", "dso", "--scope", "admin", "--ttl", "nan"], "--ttl"),
    (["token", "create", "--stakeholder", "dso", "--ttl", "60"], "--scope"),
    (["token", "create", "--stakeholder", "dso", "--scope", "admin", "--ttl", "60", "--group", "a/b"], "--group"),
    (["token", "revoke", "nonsense"], "TOKEN|ID"),
    (["token", "revoke", "0123456789ab"], "TOKEN|ID"),
    (["portal", "--registry", "missing.db"], "--registry"),
    (["portal", "--registry", "garbage.db"], "--registry"),
    (["portal", "--registry", "registry.db", "--port", "70000"], "--port"),
    (["portal", "--registry", "registry.db", "--broker", "mqtt://127.0.0.1:1"], "--hmac-key-file"),
    (["portal", "--registry", "registry.db", "--broker", "http://x", "--hmac-key-file", "key"], "--broker"),
    (["portal", "--registry", "registry.db", "--results", "nowhere"], "--results"),
    (["portal", "--registry", "registry.db", "--hmac-key-file", "garbage.db"], "--hmac-key-file"),
    (["serve"], "--registry"),
    (["serve", "--demo", "--registry", "registry.db"], "--demo"),
    (["serve", "--registry", "registry.db", "--db", "mysql://x/y"], "--db"),
    (["serve", "--registry", "registry.db", "--db", "postgresql://nobody@127.0.0.1:1/none"], "--db"),
    (["serve", "--registry", "registry.db", "--db", "garbage.db"], "--db"),
    (["serve", "--registry", "registry.db", "--retention-days", "0"], "--retention-days"),
    (["serve", "--demo", "--gateways", "0"], "--gateways"),
])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    write_registry(tmp_path / "registry.db")
    (tmp_path / "garbage.db").write_text("not a database\n")
    (tmp_path / "key").write_text(KEY.hex())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err, err


def test_the_portal_serves_over_http_as_a_process(tmp_path, capsys):
    write_registry(tmp_path / "registry.db")
    (tmp_path / "results" / "ctl").mkdir(parents=True)
    write_rounds(tmp_path / "results" / "ctl" / "rounds.csv")
    write_market(tmp_path / "results" / "te")
    (tmp_path / "dispatch.key").write_text(KEY.hex())
    db = tmp_path / "portal.db"
    token = create(db, "--stakeholder", "vpp", "--scope", "fleet:read", "--scope", "goals:write",
                   "--scope", "market:read", "--group", "671.1", "--ttl", "600", capsys=capsys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorgrid", "portal", "--db", str(db), "--registry", str(tmp_path / "registry.db"),
         "--results", str(tmp_path / "results"), "--hmac-key-file", str(tmp_path / "dispatch.key"),
         "--key-id", "portal", "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        base = f"http://127.0.0.1:{m.group(1)}"
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 15
        while True:
            try:
                assert httpx.get(base + "/health", timeout=2).json()["ok"] is True
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "portal did not answer"
                time.sleep(0.1)
        groups = httpx.get(base + "/v1/fleet/groups", headers=auth, timeout=5).json()["groups"]
        assert [g["group"] for g in groups] == ["671.1"] and groups[0]["latest_round"]["goal_kw"] == 30.0
        now = int(time.time() * 1000)
        r = httpx.post(base + "/v1/goals", headers=auth, timeout=5, json={
            "group": "671.1", "points": [{"ts_ms": now, "goal_kw": 25.0}], "valid_until_ts_ms": now + 600_000})
        assert r.status_code == 201 and r.json()["published"] is False and r.json()["payload"]["key_id"] == "portal"
        assert httpx.get(base + "/v1/ledger/checkpoints", headers=auth, timeout=5).json()["checkpoints"]
        assert "colorgrid portal" in httpx.get(base + "/", timeout=5).text
        assert main(["token", "revoke", token, "--db", str(db)]) == 0      # another process revokes it
        r = httpx.get(base + "/v1/fleet/groups", headers=auth, timeout=5)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0, proc.stderr.read()
