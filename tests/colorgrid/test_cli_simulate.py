"""`colorgrid simulate`: files and columns under --out, reproducibility, TOML config, errors."""
import json

import pytest

from colorgrid.cli import main

FAST = ["--devices", "500", "--duration-s", "600", "--warmup-s", "120"]


def read(out):
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("wall")
    return (out / "timeseries.csv").read_bytes(), summary


def test_out_files_columns_and_byte_identical_rerun(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["simulate", *FAST, "--seed", "3", "--out", str(a)]) == 0
    printed = capsys.readouterr().out
    assert "pjm_score" in printed and "rms_pct_of_capacity" in printed
    assert main(["simulate", *FAST, "--seed", "3", "--out", str(b)]) == 0
    assert read(a) == read(b)
    csv_bytes, summary = read(a)
    header = csv_bytes.decode().splitlines()[0].split(",")
    for col in ("t_s", "goal_kw", "achieved_kw", "enabled_green_kw", "enabled_yellow_kw",
                "enabled_black_kw", "target_green_kw", "p_on_green", "p_off_yellow", "scored"):
        assert col in header, col
    for fig in ("rms_pct_of_capacity", "pjm_score", "pjm_correlation", "pjm_delay", "pjm_precision",
                "fairness_on_time_std", "switches_per_device_hour"):
        assert isinstance(summary["figures"][fig], float), fig
    assert summary["units"]["rms_pct_of_capacity"] == "%"
    assert summary["params"]["devices"] == 500 and summary["seed"] == 3
    assert sorted(summary["files"]) == ["simulate.png", "summary.json", "timeseries.csv"]
    assert (a / "simulate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    n_rows = len(csv_bytes.decode().splitlines()) - 1
    assert n_rows == (600 + 120) // 2
    # another seed gives other data
    c = tmp_path / "c"
    assert main(["simulate", *FAST, "--seed", "4", "--out", str(c)]) == 0
    assert read(c)[0] != csv_bytes


def test_toml_config_and_flag_override(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('scenario = "step"\ndevices = 300\n"duration-s" = 600\nwarmup_s = 60\n'
                   'base = 0.5\namplitude = -0.1\ntier-shares = [0.5, 0.3, 0.2]\nseed = 9\n')
    out = tmp_path / "o"
    assert main(["simulate", "--config", str(cfg), "--devices", "400", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["params"]["scenario"] == "step" and s["params"]["devices"] == 400
    assert s["params"]["tier_shares"] == [0.5, 0.3, 0.2] and s["seed"] == 9
    assert "step_settle_s" in s["figures"] or "step_settled" in s["figures"]


def test_plot_without_out(tmp_path):
    png = tmp_path / "p.png"
    assert main(["simulate", *FAST, "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,needle", [
    (["--scenario", "wobble"], "scenario"),
    (["--tier-shares", "0.5,0.6,0.1"], "tier-shares"),
    (["--device-kw", "normal:1:2"], "device-kw"),
    (["--base", "0.9", "--amplitude", "0.3"], "amplitude"),
    (["--report-loss", "1.5"], "report-loss"),
    (["--config", "/nonexistent/x.toml"], "--config"),
])
def test_bad_flags_give_clear_error(argv, needle, capsys):
    assert main(["simulate", *FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert "colorgrid simulate: error:" in err and needle in err


def test_bad_toml_key(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("devcies = 10\n")
    assert main(["simulate", "--config", str(cfg)]) == 2
    assert "devcies" in capsys.readouterr().err


def test_non_number_flag_is_argparse_error(capsys):
    assert main(["simulate", "--devices", "lots"]) == 2  # argparse's exit, as main's return code
    assert "--devices" in capsys.readouterr().err


def test_custom_signal_and_device_csv(tmp_path):
    import math
    sig = tmp_path / "sig.csv"
    sig.write_text("# my signal\n" + "\n".join(f"{math.sin(i / 20):.6f}" for i in range(600)) + "\n")
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("p_kw\n2.0\n3.0\n4.0\n")
    out = tmp_path / "o"
    assert main(["simulate", *FAST, "--signal", str(sig), "--device-kw", str(sizes),
                 "--amplitude", "0.1", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["params"]["signal"] == str(sig)
    assert s["figures"]["pjm_score"] > 0.8
    rows = (out / "timeseries.csv").read_text().splitlines()
    header = rows[0].split(",")
    first_scored = next(r.split(",") for r in rows[1:] if r.endswith(",1"))
    goal = float(first_scored[header.index("goal_kw")])
    fleet = s["figures"]["fleet_demand_kw"]
    assert goal == pytest.approx(fleet * (0.5 + 0.1 * 0.0), rel=1e-9)   # sin(0) = 0


def test_groups_write_per_group_metrics_and_a_group_column(tmp_path, capsys):
    import csv

    out = tmp_path / "g"
    argv = ["simulate", "--devices", "800", "--duration-s", "400", "--warmup-s", "120",
            "--groups", "4", "--group-offset-s", "900", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "g3" in printed
    summary = json.loads((out / "summary.json").read_text())
    groups = summary["figures"]["groups"]
    assert sorted(groups) == ["g0", "g1", "g2", "g3"]
    for figs in groups.values():
        assert figs["rms_pct_of_capacity"] > 0 and 0 < figs["pjm_score"] <= 1
        assert figs["fleet_demand_kw"] > 0
    total_d = sum(f["fleet_demand_kw"] for f in groups.values())
    assert total_d == pytest.approx(summary["figures"]["fleet_demand_kw"])
    with (out / "timeseries.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * (400 + 120) // 2 and {r["group"] for r in rows} == {"g0", "g1", "g2", "g3"}
    by_t: dict = {}
    for r in rows:
        by_t.setdefault(r["t_s"], {})[r["group"]] = float(r["goal_kw"])
    # one goal each: the offset signal makes the groups' goals differ at the same instant
    late = by_t[str(300.0)]
    assert len({round(v / groups[g]["fleet_demand_kw"], 6) for g, v in late.items()}) == 4
    # each group tracks its own goal (its error is small against its goal, not the others')
    err = {g: [] for g in groups}
    for r in rows:
        if r["scored"] == "1":
            err[r["group"]].append(abs(float(r["achieved_kw"]) - float(r["goal_kw"])))
    for g, e in err.items():
        assert sum(e) / len(e) < 0.05 * groups[g]["fleet_demand_kw"], g


def test_one_group_is_named_fleet_and_groups_are_checked(tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["simulate", *FAST, "--out", str(out)]) == 0
    assert (out / "timeseries.csv").read_text().splitlines()[1].split(",")[1] == "fleet"
    assert "groups" not in json.loads((out / "summary.json").read_text())["figures"]
    assert main(["simulate", "--devices", "100", "--groups", "11"]) == 2
    assert "groups: must be at most the number of gateways (10" in capsys.readouterr().err
