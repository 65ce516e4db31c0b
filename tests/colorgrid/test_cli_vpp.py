"""`colorgrid vpp ingest|curve|dispatch` as a user runs them: a simulated fleet's timeseries.csv →
yield store → offers.json in the LEM schema (merged into a generated market) → a schedule.csv in the
LEM's own columns → signed schedules that cloud's DispatchGoal accepts, goal = baseline − cleared."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cloud.dispatch import DispatchGoal
from colorgrid.cli import main
from market.lem.schema import load_market
from market.lem.tables import SCHEDULE_COLUMNS

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
GROUPS = "g0=671.1,g1=675.3"
PORTFOLIO = """tiers = ["green", "yellow", "black"]
[contracts.green]
max_curtailment_h_per_day = 4
max_events_per_day = 2
min_notice_min = 0
compensation_usd_per_kwh = 0.04
[contracts.yellow]
max_curtailment_h_per_day = 2
max_events_per_day = 1
min_notice_min = 0
compensation_usd_per_kwh = 0.07
"""


def _holdings(loc: str, kw: tuple[float, float, float]) -> str:
    return "".join(f'[[holdings]]\nlocation = "{loc}"\ntier = "{t}"\ndevices = 100\nkw = {k}\n'
                   for t, k in zip(("green", "yellow", "black"), kw))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vpp")
    # 24 h of an undispatched two-group fleet at 60-s rounds (every hour of day has statistics)
    assert main(["simulate", "--scenario", "fairness", "--devices", "400", "--groups", "2", "--base", "1.0",
                 "--amplitude", "0", "--warmup-s", "0", "--duration-s", "86400", "--round-s", "60", "--seed", "3",
                 "--out", str(tmp / "sim")]) == 0
    (tmp / "portfolio.toml").write_text(PORTFOLIO + _holdings("671.1", (200.0, 200.0, 50.0))
                                        + _holdings("675.3", (150.0, 0.0, 40.0)))
    (tmp / "key.hex").write_text(KEY_HEX + "\n")
    return tmp


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_ingest_curve_dispatch(work, capsys):
    db, pf = str(work / "vpp.db"), str(work / "portfolio.toml")
    assert main(["vpp", "ingest", "--portfolio", pf, "--db", db, "--timeseries", str(work / "sim" / "timeseries.csv"),
                 "--group-map", GROUPS]) == 0
    assert "2880 telemetry rows at 2 location(s)" in capsys.readouterr().out
    # the fleet's mean enabled kW per tier and group: the statistics must reproduce it
    ts = _rows(work / "sim" / "timeseries.csv")
    mean = {g: {t: sum(float(r[f"enabled_{t}_kw"]) for r in ts if r["group"] == g) / 1440
                for t in ("green", "yellow", "black")} for g in ("g0", "g1")}
    assert main(["market", "offers", "--feeder", "ieee13", "--seed", "1", "--out", str(work / "mkt")]) == 0
    assert main(["vpp", "curve", "--portfolio", pf, "--db", db, "--market", str(work / "mkt" / "offers.json"),
                 "--out", str(work / "curve")]) == 0
    market = load_market(work / "curve" / "offers.json")                 # the LEM's own validation
    vpp = {o.id: o for o in market.offers if o.id.startswith("vpp/")}
    assert set(vpp) == {"vpp/671.1/green", "vpp/671.1/yellow", "vpp/675.3/green"}
    generated = json.loads((work / "mkt" / "offers.json").read_text())
    assert len(market.offers) == len(generated["offers"]) + 3 and len(market.bids) == len(generated["bids"])
    green = vpp["vpp/671.1/green"]
    on = [t for t, q in enumerate(green.p_max_kw) if q > 0]
    assert len(on) == 4                                                  # 4 h of green per day
    # constant loads, nothing shed: P90 = the mean = min(contract, enabled)
    assert green.p_max_kw[on[0]] == pytest.approx(min(200.0, mean["g0"]["green"]), rel=1e-9)
    assert green.steps[0].price_usd_per_mwh == pytest.approx(40.0)
    curve = _rows(work / "curve" / "curve.csv")
    base = {(r["location"], int(r["interval"])): float(r["baseline_kw"]) for r in curve}
    assert base[("671.1", 0)] == pytest.approx(sum(mean["g0"].values()), rel=1e-9)
    assert (work / "curve" / "curve.png").stat().st_size > 0
    # a schedule.csv in the LEM's columns: 671.1 clears 120 kW green in its first green hour, 675.3 nothing
    t0 = on[0]
    with (work / "schedule.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SCHEDULE_COLUMNS)
        for t in range(24):
            w.writerow(["vpp/671.1/green", "offer", "671", "1", t, 120.0 if t == t0 else 0.0, 0.0])
            w.writerow(["vpp/675.3/green", "offer", "675", "3", t, 0.0, 0.0])
            w.writerow(["pv000", "offer", "634", "3", t, 5.0, 0.0])
    assert main(["vpp", "dispatch", "--portfolio", pf, "--curves", str(work / "curve" / "curves.json"),
                 "--schedule", str(work / "schedule.csv"), "--hmac-key-file", str(work / "key.hex"),
                 "--issued-ms", "0", "--dispatch-id", "7", "--out", str(work / "disp")]) == 0
    goal = DispatchGoal({"vpp": bytes.fromhex(KEY_HEX)})
    for loc in ("671.1", "675.3"):
        assert goal.offer(loc, (work / "disp" / "dispatch" / f"{loc}.json").read_bytes().strip(), now_ms=0) == ""
    hour = 3_600_000
    assert goal.goal_kw("671.1", t0 * hour + 1) == pytest.approx(base[("671.1", t0)] - 120.0, rel=1e-9)
    other = (t0 + 1) % 24
    assert goal.goal_kw("671.1", other * hour + 1) >= base[("671.1", other)] - 1e-9      # nothing shed
    plan = _rows(work / "disp" / "plan.csv")
    assert sum(float(r["reduction_kw"]) for r in plan) == pytest.approx(120.0)


def test_dispatch_refuses_a_schedule_without_vpp_resources(work, capsys):
    bad = work / "no_vpp.csv"
    bad.write_text(",".join(SCHEDULE_COLUMNS) + "\npv000,offer,634,3,0,5.0,0.0\n")
    curves = work / "curve" / "curves.json"
    if not curves.exists():
        pytest.skip("needs test_ingest_curve_dispatch's curves")
    assert main(["vpp", "dispatch", "--portfolio", str(work / "portfolio.toml"), "--curves", str(curves),
                 "--schedule", str(bad), "--hmac-key-file", str(work / "key.hex"), "--out", str(work / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--schedule" in err and "no VPP resource" in err


@pytest.mark.broker
def test_dispatch_publishes_retained_schedules_on_a_real_broker(work, capsys):
    """--broker: each location's signed schedule is retained on colorgrid/v1/dispatch/<location>;
    a subscriber arriving later (as a controller would) gets them and cloud accepts them."""
    import threading

    import paho.mqtt.client as mqtt

    from firmware_sim.broker import MosquittoBroker

    curves = work / "curve" / "curves.json"
    if not curves.exists():
        pytest.skip("needs test_ingest_curve_dispatch's curves")
    with MosquittoBroker() as broker:
        assert main(["vpp", "dispatch", "--portfolio", str(work / "portfolio.toml"), "--curves", str(curves),
                     "--schedule", str(work / "schedule.csv"), "--hmac-key-file", str(work / "key.hex"),
                     "--issued-ms", "0", "--dispatch-id", "8", "--broker", broker.url, "--out", str(work / "pub")]) == 0
        assert "published 2 to" in capsys.readouterr().out
        got, done = {}, threading.Event()

        def on_message(client, userdata, msg):
            got[msg.topic] = (msg.payload, msg.retain)
            if len(got) == 2:
                done.set()

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vpp-test-sub")
        sub.on_message = on_message
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("colorgrid/v1/dispatch/#", qos=1)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        try:
            assert done.wait(10.0), got
        finally:
            sub.loop_stop()
            sub.disconnect()
    goal = DispatchGoal({"vpp": bytes.fromhex(KEY_HEX)})
    for loc in ("671.1", "675.3"):
        payload, retained = got[f"colorgrid/v1/dispatch/{loc}"]
        assert retained and payload.strip() == (work / "pub" / "dispatch" / f"{loc}.json").read_bytes().strip()
        assert goal.offer(loc, payload, now_ms=0) == ""
