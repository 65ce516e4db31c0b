"""`colorgrid market offers|clear`: files, their identities, te run reading dlmp.csv, one-line errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from colorgrid.cli import main

from tests.market.lem.test_ac_iteration import MARKET, SHAPE

IEEE13 = "ieee13"


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cleared(tmp_path_factory):
    d = tmp_path_factory.mktemp("clear")
    (d / "offers.json").write_text(json.dumps(MARKET))
    (d / "shape.csv").write_text("interval,load_factor\n" + "".join(f"{t},{s}\n" for t, s in enumerate(SHAPE)))
    code = main(["market", "clear", "--feeder", IEEE13, "--offers", str(d / "offers.json"),
                 "--load-shape", str(d / "shape.csv"), "--out", str(d / "out")])
    return code, d / "out"


def test_offers_command_writes_a_valid_deterministic_document(tmp_path, capsys):
    from market.lem.schema import load_market

    assert main(["market", "offers", "--feeder", IEEE13, "--seed", "4", "--out", str(tmp_path / "a")]) == 0
    assert main(["market", "offers", "--feeder", IEEE13, "--seed", "4", "--out", str(tmp_path / "b")]) == 0
    a, b = (tmp_path / "a" / "offers.json").read_bytes(), (tmp_path / "b" / "offers.json").read_bytes()
    assert a == b and load_market(tmp_path / "a" / "offers.json").intervals == 24
    assert "participants" in capsys.readouterr().out


def test_clear_writes_every_file_with_consistent_numbers(cleared):
    code, out = cleared
    assert code == 0
    for name in ("dlmp.csv", "schedule.csv", "settlement.csv", "critical_set.csv", "iterations.csv", "summary.json",
                 "dlmp_heatmap.png", "slacks.csv", "violations.csv", "blocks.csv", "commitment.csv"):
        assert (out / name).is_file(), name
    dlmp = _csv(out / "dlmp.csv")
    assert list(dlmp[0]) == ["bus", "phase", "interval", "dlmp_usd_per_mwh", "energy", "loss", "congestion", "voltage",
                             "q_price_usd_per_mvarh"]
    for r in dlmp:
        parts = sum(float(r[k]) for k in ("energy", "loss", "congestion", "voltage"))
        assert abs(parts - float(r["dlmp_usd_per_mwh"])) < 1e-6
    assert {r["interval"] for r in dlmp} == {"0", "1", "2", "3"}
    sched = _csv(out / "schedule.csv")
    assert {r["phase"] for r in sched if r["resource"] == "g671"} == {"abc"}
    assert {r["phase"] for r in sched if r["resource"] == "g611"} == {"3"}
    # the balance identity, from the file: every interval's payments (parties + ISO + DSO) sum to zero
    rows = [r for r in _csv(out / "settlement.csv") if r["interval"] != "total"]
    for t in range(4):
        amounts = [float(r["amount_usd"]) for r in rows if r["interval"] == str(t)]
        assert abs(sum(amounts)) < 1e-6 * max(1.0, sum(map(abs, amounts)))
    assert {"iso", "dso_congestion_rent", "dso_loss_surplus"} <= {r["party"] for r in rows}
    summary = json.loads((out / "summary.json").read_text())["figures"]
    for key in ("objective_usd", "pricing_objective_usd", "uplift_usd", "stage_times_s", "iterations",
                "critical_set_size", "slack_totals", "solver_status"):
        assert key in summary
    assert summary["status"] == "converged" and summary["violations_left"] == 0
    assert summary["equilibrium_violations"] == [] and summary["equilibrium_max_gap_usd"] < 1e-6
    assert summary["pricing_objective_usd"] <= summary["objective_usd"] + 1e-6
    its = _csv(out / "iterations.csv")
    assert len(its) == summary["iterations"] and int(its[0]["line_violations"]) > 0 and its[-1]["line_violations"] == "0"
    crit = _csv(out / "critical_set.csv")
    assert len(crit) == summary["critical_set_size"] and any(r["id"] == "line.650632.3" for r in crit)


def test_rtm_reads_the_dam_folder_holds_its_commitments_and_settles_two_ways(cleared, tmp_path):
    # the RT load 10 % above the DA's in interval 2: the deviations are settled at the RT prices
    _, dam = cleared
    (tmp_path / "offers.json").write_text(json.dumps(MARKET))
    (tmp_path / "rt.csv").write_text("interval,load_factor\n" + "".join(f"{t},{SHAPE[2] * 1.1}\n" for t in range(6)))
    code = main(["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "offers.json"), "--horizon", "rtm",
                 "--dam", str(dam), "--hour", "2", "--intervals", "6", "--rt-load-shape", str(tmp_path / "rt.csv"),
                 "--out", str(tmp_path / "rt")])
    assert code == 0
    out = tmp_path / "rt"
    sched = _csv(out / "schedule.csv")
    assert {r["interval"] for r in sched} == {str(t) for t in range(6)} and {r["da_interval"] for r in sched} == {"2"}
    on = {r["resource"]: r["value"] for r in _csv(dam / "commitment.csv") if r["kind"] == "unit" and r["interval"] == "2"}
    for r in sched:   # the unit runs in RT exactly when it is committed in the DA
        if r["resource"] == "dg692":
            assert (float(r["p_kw"]) > 0) == (float(on["dg692"]) > 0.5)
    rows = [r for r in _csv(out / "settlement.csv") if r["interval"] != "total"]
    for t in range(6):
        amounts = [float(r["amount_usd"]) for r in rows if r["interval"] == str(t)]
        assert abs(sum(amounts)) < 1e-6 * max(1.0, sum(map(abs, amounts)))
    for r in rows:
        if r["kind"] != "dso":   # DA quantity × DA price + (RT − DA) × RT price, per 5 min
            expect = (float(r["da_p_kw"]) * float(r["da_price_usd_per_mwh"]) + (float(r["rt_p_kw"]) - float(r["da_p_kw"]))
                      * float(r["rt_price_usd_per_mwh"])) * (5 / 60) / 1000
            assert abs(float(r["amount_usd"]) - expect) < 1e-9
    loads = [r for r in rows if r["kind"] == "fixed_load" and r["interval"] == "0"]
    ratio = sum(float(r["rt_p_kw"]) for r in loads) / sum(float(r["da_p_kw"]) for r in loads)
    assert abs(ratio - 1.1) < 1e-9
    summary = json.loads((out / "summary.json").read_text())["figures"]
    assert summary["horizon"] == "rtm" and summary["rt_intervals"] == 6 and summary["held_commitments"] > 0


def test_clear_appends_the_settlement_to_a_ledger_that_verifies(tmp_path, capsys):
    (tmp_path / "offers.json").write_text(json.dumps(MARKET))
    argv = ["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "offers.json"), "--load-shape", "flat",
            "--max-iterations", "1", "--ledger", str(tmp_path / "lem.sqlite"), "--ledger-seed", "3"]
    assert main(argv + ["--out", str(tmp_path / "a")]) in (0, 2)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["figures"]
    assert summary["ledger"]["created"] and summary["ledger"]["entries"] > 20
    led = summary["ledger"]   # the pool keeps only the rounding of Wh, prices and rents to integers
    assert abs(led["pool_residual_ntok"]) <= led["rounding_bound_ntok"] + 1e9 * summary["balance_gap_usd"]
    capsys.readouterr()
    assert main(["ledger", "verify", str(tmp_path / "lem.sqlite")]) == 0
    # the same day again: its meter readings are already there
    assert main(argv + ["--out", str(tmp_path / "b")]) == 2
    assert "--ledger" in _one_line(capsys)


def test_te_run_accepts_the_dlmp_file(cleared, tmp_path):
    _, out = cleared
    code = main(["te", "run", "--dlmp-csv", str(out / "dlmp.csv"), "--intervals", "4", "--participants", "12",
                 "--out", str(tmp_path / "te")])
    assert code == 0


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_schema_errors_name_the_field_path(tmp_path, capsys):
    bad = dict(MARKET, offers=[{"id": "x", "location": "671", "steps": [{"price_usd_per_mwh": "cheap", "p_kw": 5}]}])
    (tmp_path / "o.json").write_text(json.dumps(bad))
    assert main(["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "o.json"), "--out", str(tmp_path)]) == 2
    assert "offers[0].steps[0].price_usd_per_mwh" in _one_line(capsys)


@pytest.mark.parametrize("extra, text", [
    (["--horizon", "rtm", "--hour", "3", "--intervals", "13"], "--hour"),
    (["--horizon", "rtm", "--dam", "/nonexistent"], "--dam"),
    (["--ledger", "/nonexistent/dir/l.sqlite"], "--ledger"),
    (["--horizon", "rtm", "--ledger", "l.sqlite"], "--ledger"),
    (["--load-shape", "nope.csv"], "--load-shape"),
    (["--intervals", "24"], "--intervals"),
    (["--feeder", "ieee999"], "--feeder"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, extra, text):
    (tmp_path / "o.json").write_text(json.dumps(MARKET))
    argv = ["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "o.json"), "--out", str(tmp_path / "x")]
    assert main(argv + extra) == 2
    assert text in _one_line(capsys)


def test_unknown_location_and_unjson_are_one_line(tmp_path, capsys):
    (tmp_path / "o.json").write_text(json.dumps(dict(MARKET, bids=[{"id": "b", "location": "999.1",
                                                                    "steps": [{"price_usd_per_mwh": 1, "p_kw": 1}]}])))
    assert main(["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "o.json"), "--out", str(tmp_path)]) == 2
    assert "bids[0].location" in _one_line(capsys)
    (tmp_path / "n.json").write_text("{not json")
    assert main(["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "n.json"), "--out", str(tmp_path)]) == 2
    assert "--offers" in _one_line(capsys)


def test_infeasible_market_exits_2_with_a_slack_report(tmp_path, capsys):
    short = dict(MARKET, iso={"import_price_usd_per_mwh": [30.0] * 4, "import_max_kw": 500.0}, offers=[], units=[],
                 storage=[], bids=[])
    (tmp_path / "o.json").write_text(json.dumps(short))
    code = main(["market", "clear", "--feeder", IEEE13, "--offers", str(tmp_path / "o.json"), "--load-shape", "flat",
                 "--max-iterations", "1", "--out", str(tmp_path / "out")])
    assert code == 2
    line = _one_line(capsys)
    assert "energy_shortfall" in line and "slacks.csv" in line
    slacks = _csv(tmp_path / "out" / "slacks.csv")
    assert {r["family"] for r in slacks} >= {"energy_shortfall"} and len({r["interval"] for r in slacks}) == 4
