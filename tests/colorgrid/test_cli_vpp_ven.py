"""`colorgrid vpp ven` as a user runs it: one-line errors (exit 2) for bad flags and for a missing
`[openadr]` extra, and a real run in a child process against an openleadr VTN in this test's loop:
registration, an event opted in from the yield store's flexibility, the achieved kW of a rounds.csv
reported back, SIGTERM, then events.csv / goals.csv / reports.csv / summary.json."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colorgrid.cli import main
from market.vpp import SqliteYieldStore, YieldStats
from tests.broker import free_port
from tests.market.vpp.cases import rows
from tests.colorgrid.test_cli_vpp import PORTFOLIO, _holdings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "portfolio.toml").write_text(PORTFOLIO + _holdings("671.1", (200.0, 100.0, 50.0)))
    stats = YieldStats(SqliteYieldStore(str(tmp_path / "vpp.db")), ("green", "yellow", "black"))
    for h in range(24):          # every hour of day: green 60..100 kW, yellow 40, black 20
        for b, g in enumerate((60.0, 70.0, 80.0, 90.0, 100.0)):
            stats.ingest(rows("671.1", h * 3_600_000 + b * 60_000, 2, 30_000, (g, 40.0, 20.0)))
    return tmp_path


def _argv(files, *extra):
    return ["vpp", "ven", "--vtn-url", "http://127.0.0.1:9/OpenADR2/Simple/2.0b", "--ven-name", "vpp-1",
            "--portfolio", str(files / "portfolio.toml"), "--db", str(files / "vpp.db"), "--out", str(files / "out"),
            *extra]


@pytest.mark.parametrize("change, flag", [
    ({"--vtn-url": "ftp://vtn"}, "--vtn-url: expected http(s)://host"),
    ({"--ven-name": " "}, "--ven-name: empty"),
    ({"--broker": "mqtt://127.0.0.1:1"}, "--hmac-key-file: needed with --broker"),
    ({"--vtn-url": "http://127.0.0.1:99999/x"}, "--vtn-url: bad port"),
    ({"--db": "{text}"}, "--db: file is not a database"),
    ({"--rounds": "{text}"}, "--rounds: "),
    ({"--max-kw": "-5"}, "--max-kw"),
])
def test_bad_flags_are_one_line(files, capsys, change, flag):
    argv = _argv(files)
    (files / "text.csv").write_text("a,b\n1,2\n")
    for k, v in change.items():
        v = v.replace("{text}", str(files / "text.csv"))
        if k in argv:
            argv[argv.index(k) + 1] = v
        else:
            argv += [k, v]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err


def test_missing_extra_says_how_to_install(files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openleadr", None)           # import openleadr -> ImportError
    assert main(_argv(files)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'colorgrid[openadr]'" in err


def test_unreachable_vtn_is_one_line(files, capsys):
    from tests.market.vpp.test_openadr_vtn import openleadr  # noqa: F401  (skips, or fails under scripts/test.sh)
    assert main(_argv(files)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("colorgrid vpp ven: error: argument --vtn-url: http://127.0.0.1:9/")


def _write_rounds(path: Path, origin_ms: int, n: int) -> None:
    """Controller rounds every second from origin_ms: 671.1 enabled 50 + 30 + 20 = 100 kW, nothing shed."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "group", "enabled_t0_kw", "enabled_t1_kw", "enabled_t2_kw", "p_off_t0", "p_off_t1", "p_off_t2"])
        for i in range(n):
            w.writerow([float(i), "671.1", 50.0, 30.0, 20.0, 0.0, 0.0, 0.0])


async def test_a_ven_run_against_an_openleadr_vtn(files):
    from tests.market.vpp.test_openadr_vtn import Vtn, until

    port = free_port()
    vtn = Vtn(port)
    vtn.server.add_handler("on_create_party_registration",
                           lambda info: ("ven-1", "reg-9") if info["ven_name"] == "vpp-1" else False)
    await vtn.server.run()
    now_ms = int(time.time() * 1000)
    _write_rounds(files / "rounds.csv", now_ms - 60_000, 900)
    argv = _argv(files, "--rounds", str(files / "rounds.csv"), "--origin-ms", str(now_ms - 60_000),
                 "--report-s", "1", "--duration-s", "120")
    argv[argv.index("--vtn-url") + 1] = vtn.url
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "colorgrid.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await until(lambda: vtn.reports or proc.poll() is not None, timeout_s=90)
        assert proc.poll() is None, proc.communicate()
        # baseline = mean green 80 + 40 + 20 = 140 kW; P90 flexible = green 64 + yellow 40 = 104 kW
        # both intervals within one hour of day (its 5 buckets: the P90 below), from the next hh:02
        next_hour_s = (time.time() // 3600 + 1) * 3600 + 120
        start, opt = vtn.event([100.0, 60.0], start_in_min=(next_hour_s - time.time()) / 60)   # reductions 40, 80 kW
        opts = [await asyncio.wait_for(opt, 60)]
        _, opt = vtn.event([20.0], start_in_min=90)            # reduction 120 kW > 104: opt out
        opts.append(await asyncio.wait_for(opt, 60))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        await vtn.server.stop()
    assert proc.returncode == 0 and opts == ["optIn", "optOut"], out + err
    assert {r[1] for r in vtn.reports} == {"671.1"} and vtn.reports[0][2] == pytest.approx(100.0)
    assert "registered with" in out and "2 event(s): 1 opted in, 1 opted out" in out
    events = list(csv.DictReader((files / "out" / "events.csv").open()))
    assert [e["opt"] for e in events] == ["optIn", "optOut"]
    assert "requested reduction 120 kW exceeds the 104 kW flexible (P90)" in events[1]["reason"]
    goals = list(csv.DictReader((files / "out" / "goals.csv").open()))
    assert [(g["location"], float(g["goal_kw"]), float(g["green_kw"]), float(g["yellow_kw"])) for g in goals] == [
        ("671.1", 100.0, 40.0, 0.0), ("671.1", 60.0, 64.0, 16.0)]
    assert int(goals[0]["start_ms"]) == int(start.timestamp() * 1000)
    reports = list(csv.DictReader((files / "out" / "reports.csv").open()))
    assert reports and all(float(r["achieved_kw"]) == 100.0 for r in reports)
    summary = json.loads((files / "out" / "summary.json").read_text())
    assert summary["figures"]["opted_in"] == 1 and summary["figures"]["reports_sent"] >= 1
    assert summary["figures"]["reduction_kwh"] == pytest.approx((40.0 + 80.0) * 0.25)
    # the accepted reductions are dispatch records of the yield store (the response ratio's input)
    held = SqliteYieldStore(str(files / "vpp.db")).dispatches("671.1")
    assert [(d.start_ms - goals_start, d.requested_kw) for d in held
            for goals_start in [int(goals[0]["start_ms"])]] == [(0, pytest.approx(40.0)), (900_000, pytest.approx(80.0))]
