"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright).

Scenario: a controller (the real `ControllerCore`, `SqliteRegistry`, `RoundsStream`) has run 40
rounds over six simulated gateways in three groups — one gateway shut down, one group's only
gateway silent — and the LEM left a `dlmp.csv`. `colorgrid portal` serves that world as a process.
A stakeholder signs in with a token, sees the groups and gateways with their health, the goal vs
achieved charts advance when the controller appends rounds, the DLMP heatmap shows every
bus·phase × interval; then `colorgrid token revoke` revokes the token and the page's next poll
shows the login screen. A screenshot of the dashboard is saved in the test's folder.

Second scenario: `colorgrid serve --demo` — one command starting a broker, the controller and a
simulated fleet on real time — signed in with the read token it prints: the chart's data
advances between two reads, the twin and /metrics carry the controller's live figures, the
store records the series, a revoked token gets the login; `serve-demo.png` is saved.
"""
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from colorgrid.cli import main
from tests.portal.fleet_world import ControlledFleet, SimGateway

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
GOALS = {"671.1": 50.0, "692.3": 20.0, "675.2": 5.0}
DLMP_BUSES = [("650", "abc"), ("632", "1"), ("632", "2"), ("632", "3"), ("671", "1"), ("671", "2"), ("671", "3"),
              ("675", "1"), ("675", "2"), ("692", "3")]
INTERVALS = 24

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh "
                                                          "installs it: apt-get install chromium)")


def write_dlmp(path) -> int:
    """dlmp.csv as the LEM writes it (market/lem/tables.py DLMP_COLUMNS): the energy price plus a
    loss component growing along the feeder and congestion at 671-692 in the evening peak."""
    lines = ["bus,phase,interval,dlmp_usd_per_mwh,energy,loss,congestion,voltage"]
    for t in range(INTERVALS):
        energy = 30.0 + 25.0 * (1 if 17 <= t <= 20 else 0) + 5.0 * (t % 6) / 5
        for i, (bus, phase) in enumerate(DLMP_BUSES):
            loss = 0.15 * i * energy / 30.0
            congestion = 18.0 if bus in ("671", "675", "692") and 17 <= t <= 20 else 0.0
            voltage = 0.4 if phase == "3" and t >= 18 else 0.0
            lines.append(f"{bus},{phase},{t},{energy + loss + congestion + voltage!r},{energy!r},{loss!r},"
                         f"{congestion!r},{voltage!r}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


@pytest.fixture
def fleet(tmp_path):
    (tmp_path / "results" / "ctl").mkdir(parents=True)
    gws = [SimGateway("gw-a1", "671.1", 8, [1500, 1000, 700]), SimGateway("gw-a2", "671.1", 8, [1500, 1000, 700]),
           SimGateway("gw-a3", "671.1", 6, [1500, 1000, 700]), SimGateway("gw-b1", "692.3", 5, [2000, 1000, 500]),
           SimGateway("gw-b2", "692.3", 5, [2000, 1000, 500]), SimGateway("gw-c1", "675.2", 4, [1000, 1000, 1000])]
    world = ControlledFleet(tmp_path / "registry.db", tmp_path / "results" / "ctl" / "rounds.csv", GOALS, gws,
                            silent=("gw-c1",), history_rounds=40)
    world.die("gw-a3")
    world.rounds(2, realtime=False)
    yield world
    world.close()


def start_portal(tmp_path, db):
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorgrid", "portal", "--db", str(db), "--registry", str(tmp_path / "registry.db"),
         "--results", str(tmp_path / "results"), "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise AssertionError((line, proc.stderr.read()))
    base = f"http://127.0.0.1:{m.group(1)}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "portal did not answer"
        time.sleep(0.05)


def test_dashboard_in_headless_chromium(tmp_path, fleet, capsys):
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed (pip install playwright)")
    n_dlmp = write_dlmp(tmp_path / "results" / "dlmp.csv")
    db = tmp_path / "portal.db"
    assert main(["token", "create", "--db", str(db), "--stakeholder", "dso", "--scope", "fleet:read",
                 "--scope", "market:read", "--group", "*", "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    proc, base = start_portal(tmp_path, db)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(8000)
                page.goto(base + "/")
                page.wait_for_selector("#login:not([hidden])")
                page.fill("#token", token)
                page.click("#login-form button[type=submit]")

                # the tables: three groups, six gateways with their health
                page.wait_for_function("document.querySelectorAll('#groups tbody tr').length === 3")
                groups = page.inner_text("#groups tbody")
                assert [line.split("\t")[0] for line in groups.splitlines()] == ["671.1", "675.2", "692.3"], groups
                assert page.inner_text("#who") == "dso"

                # the chart advances when the controller appends rounds to rounds.csv
                chart = 'svg[data-group="671.1"]'
                page.wait_for_selector(chart)
                first_round = int(page.get_attribute(chart, "data-last-round"))
                first_n = int(page.get_attribute(chart, "data-rounds"))
                assert first_round == fleet.core.round_id and first_n == 42
                assert page.locator(f"{chart} path.tier").count() == 3
                assert page.locator(f"{chart} path.goal").count() == 1
                assert page.locator(f"{chart} path.achieved").count() == 1
                last = fleet.rounds(3)                    # now, at the wall clock: vectors in force
                page.wait_for_function(f"Number(document.querySelector('{chart}').dataset.lastRound) === {last}")
                assert int(page.get_attribute(chart, "data-rounds")) == first_n + 3
                assert last > first_round
                assert page.locator('svg[data-group="692.3"]').count() == 1
                assert page.locator('svg[data-group="675.2"]').count() == 0     # silent: no rounds

                # gateway health: a1, a2, b1, b2 controlled now; a3 shut down; c1 never controlled
                page.wait_for_function("[...document.querySelectorAll('#gateways tbody tr')]"
                                       ".filter(r => r.innerText.includes('online')).length === 4")
                health = {}
                for row in page.inner_text("#gateways tbody").splitlines():
                    cells = row.split("\t")
                    health[cells[0]] = cells[2].strip()
                assert health == {"gw-a1": "online", "gw-a2": "online", "gw-a3": "offline", "gw-b1": "online",
                                  "gw-b2": "online", "gw-c1": "stale"}, health
                row_671 = page.inner_text("#groups tbody tr:first-child")
                assert "green" in row_671 and "yellow" in row_671 and "black" in row_671   # per-tier kW

                # the DLMP heatmap: every bus.phase x interval, and the table of one interval
                page.wait_for_selector("#market:not([hidden]) #dlmp-heatmap svg")
                assert page.locator("#dlmp-heatmap rect.cell").count() == n_dlmp
                assert page.locator("#dlmp tbody tr").count() == len(DLMP_BUSES)
                assert 17 <= int(page.inner_text("#dlmp-interval")) <= 20         # the peak by default
                page.click('#dlmp-heatmap rect.cell[data-interval="3"]')
                page.wait_for_function("document.getElementById('dlmp-interval').textContent === '3'")
                assert page.locator("#dlmp tbody tr").count() == len(DLMP_BUSES)
                assert page.inner_text("#error") == ""

                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

                # revoked by another process: the next poll shows the login screen
                assert main(["token", "revoke", token, "--db", str(db)]) == 0
                page.wait_for_selector("#login:not([hidden])", timeout=6000)
                assert page.is_hidden("#main")
                assert "revoked" in page.inner_text("#login-error")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0, proc.stderr.read()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def start_serve_demo(tmp_path):
    """`colorgrid serve --demo` as a process: (proc, base URL, read token, admin token)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorgrid", "serve", "--demo", "--demo-dir", str(tmp_path / "demo"),
         "--gateways", "4", "--devices-per-gateway", "5", "--groups", "2", "--port", "0", "--log-level", "warning",
         "--record-every-s", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    while not any(line.startswith("admin token:") for line in lines):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(("".join(lines), proc.stderr.read()))
        lines.append(line)
    text = "".join(lines)
    base = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)
    read = re.search(r"read token \(fleet, market, metrics\): (cgp_\S+)", text).group(1)
    admin = re.search(r"admin token: (cgp_\S+)", text).group(1)
    return proc, base, read, admin


def test_serve_demo_in_headless_chromium(tmp_path):
    """One command — `colorgrid serve --demo` — and a stakeholder sees the live system: the chart's
    data advances between two reads, the store records the series, a revoked token gets the login."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed (pip install playwright)")
    proc, base, read, admin = start_serve_demo(tmp_path)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)          # the fleet's first rounds on a loaded machine
                page.goto(base + "/")
                page.wait_for_selector("#login:not([hidden])")
                page.fill("#token", read)
                page.click("#login-form button[type=submit]")
                assert page.wait_for_selector("#who").inner_text() == "demo-viewer"
                page.wait_for_function("document.querySelectorAll('#groups tbody tr').length === 2")
                chart = 'svg[data-group="g0"]'
                page.wait_for_selector(chart)
                first = int(page.get_attribute(chart, "data-last-round"))
                first_n = int(page.get_attribute(chart, "data-rounds"))
                # the controller runs in real time (2-s rounds): the next reads show newer rounds
                page.wait_for_function(f"Number(document.querySelector('{chart}').dataset.lastRound) > {first}")
                assert int(page.get_attribute(chart, "data-rounds")) > first_n
                page.wait_for_function("[...document.querySelectorAll('#gateways tbody tr')]"
                                       ".filter(r => r.innerText.includes('online')).length === 4")
                assert page.inner_text("#error") == ""
                # the controller's own view per gateway: live state, report age, store-and-forward depth
                for row in page.inner_text("#gateways tbody").splitlines():
                    cells = row.split("\t")
                    assert cells[8].strip() == "online" and float(cells[9]) < 10 and cells[10].strip() == "0", row
                page.screenshot(path=str(tmp_path / "serve-demo.png"), full_page=True)

                # the API behind it: the twin carries live freshness, the store the series, /metrics
                # the controller's own figures
                auth = {"Authorization": f"Bearer {admin}"}
                gws = httpx.get(base + "/v1/fleet/gateways", headers=auth, timeout=10).json()["gateways"]
                assert len(gws) == 4 and all(g["live"]["state"] == "online" and g["live"]["fresh"] for g in gws)
                assert all(g["live"]["report_age_ms"] < 10_000 and g["live"]["store_depth"] == 0 for g in gws)
                deadline = time.monotonic() + 30
                while httpx.get(base + "/v1/fleet/series?group=g0", headers=auth, timeout=10).json()["total"] < 2:
                    assert time.monotonic() < deadline, "no series recorded"
                    time.sleep(0.5)
                metrics = httpx.get(base + "/metrics", headers=auth, timeout=10).text
                assert re.search(r"^colorgrid_controller_round_duration_seconds_count [1-9]", metrics, re.M)
                assert re.search(r'^colorgrid_controller_gateways\{group="g0",state="online"\} 2\.0', metrics, re.M)

                # revoked from another process: the page's next poll shows the login screen
                assert main(["token", "revoke", read, "--db", str(tmp_path / "demo" / "portal.db")]) == 0
                page.wait_for_selector("#login:not([hidden])", timeout=10_000)
                assert "revoked" in page.inner_text("#login-error")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    assert (tmp_path / "serve-demo.png").stat().st_size > 10_000
