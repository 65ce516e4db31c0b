"""`colorgrid powerflow`: a scenario file that redirects a shared feeder and edits it, solved by
colorgrid, compared with OpenDSS on the same file (voltages, losses, branch currents, ratings,
limit violations); files, columns and byte-identical reruns."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from colorgrid.cli import main

FEEDERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "feeders"
TAPS = {"reg1": 1.05, "reg2": 1.0375, "reg3": 1.0625}


def scenario(tmp_path: Path) -> Path:
    master = (FEEDERS / "ieee13" / "IEEE13Nodeckt.dss").resolve()
    lines = [f'redirect "{master}"',
             "edit load.671 kw=1000 kvar=500",
             "edit load.634a kw=200 kvar=90",
             "new generator.pv675 phases=3 bus1=675 kv=4.16 kw=300 kvar=0 model=1",
             "new generator.pv652 phases=1 bus1=652.1 kv=2.4 kw=50 kvar=10 model=1"]
    for reg, tap in TAPS.items():
        lines += [f"edit regcontrol.{reg} enabled=no", f"edit transformer.{reg} wdg=2 tap={tap}"]
    lines.append("set controlmode=off")
    path = tmp_path / "scenario.dss"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def opendss_solution(path: Path):
    import opendssdirect as dss

    dss.Text.Command("clear")
    dss.Text.Command(f'compile "{path}"')
    dss.Text.Command("set tolerance=1e-8")
    dss.Solution.Solve()
    names = dss.Circuit.AllNodeNames()
    raw = np.asarray(dss.Circuit.AllBusVolts())
    volts = dict(zip(names, raw[0::2] + 1j * raw[1::2]))
    return volts, dss.Circuit.Losses()[0] / 1000.0


def opendss_terminal1(element: str) -> tuple[list[int], np.ndarray, float, float]:
    """(terminal-1 nodes, |I| per terminal-1 conductor, NormalAmps, EmergAmps) of the solved circuit."""
    import opendssdirect as dss

    dss.Circuit.SetActiveElement(element)
    n = dss.CktElement.NumConductors()
    mag = np.asarray(dss.CktElement.CurrentsMagAng())[0::2]
    return list(dss.CktElement.NodeOrder())[:n], mag[:n], dss.CktElement.NormalAmps(), dss.CktElement.EmergAmps()


def opendss_violations(lo: float, hi: float) -> int:
    """Phase nodes (1–3) whose OpenDSS |V| pu is outside [lo, hi]."""
    import opendssdirect as dss

    names = dss.Circuit.AllNodeNames()
    pu = dss.Circuit.AllBusMagPu()
    return sum(1 for name, v in zip(names, pu) if int(name.rsplit(".", 1)[1]) <= 3 and not lo <= v <= hi)


@pytest.mark.opendss
def test_scenario_file_matches_opendss_and_reruns_identically(tmp_path, capsys):
    path = scenario(tmp_path)
    assert main(["powerflow", str(path), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "V min" in printed and "regulator taps (pu): reg1=1.05000" in printed
    out = tmp_path / "a"
    assert sorted(p.name for p in out.iterdir()) == ["branches.csv", "summary.json", "voltage_profile.png",
                                                     "voltages.csv"]
    volts = read_csv(out / "voltages.csv")
    assert list(volts[0]) == ["location", "bus", "phase", "v_pu", "angle_deg", "v_volts"]
    ref, ref_losses = opendss_solution(path)
    assert {f"{r['bus']}.{r['phase']}" for r in volts} == set(ref)
    assert all(r["location"] == f"{r['bus']}.{r['phase']}" for r in volts)
    for r in volts:
        theirs = ref[f"{r['bus']}.{r['phase']}"]
        mine = float(r["v_volts"]) * np.exp(1j * np.radians(float(r["angle_deg"])))
        base = float(r["v_volts"]) / float(r["v_pu"])
        assert abs(mine - theirs) / base <= 1e-3, r
    branches = read_csv(out / "branches.csv")
    assert list(branches[0]) == ["branch_id", "element", "phase", "i_amps", "i_to_amps", "p_kw", "q_kvar",
                                 "norm_amps", "emerg_amps", "loading_pct", "emerg_loading_pct"]
    head = [b for b in branches if b["element"] == "line.650632"]
    assert [b["phase"] for b in head] == ["1", "2", "3"]
    assert [b["branch_id"] for b in head] == ["line.650632.1", "line.650632.2", "line.650632.3"]
    for b in branches:  # terminal-1 current and ratings as OpenDSS has them
        nodes, mag, norm, emerg = opendss_terminal1(b["element"])
        assert abs(float(b["i_amps"]) - mag[nodes.index(int(b["phase"]))]) <= 1e-2, b
        assert (float(b["norm_amps"]), float(b["emerg_amps"])) == pytest.approx((norm, emerg), rel=1e-12), b
    line = head[0]
    assert float(line["loading_pct"]) == pytest.approx(100.0 * max(float(line["i_amps"]), float(line["i_to_amps"]))
                                                       / float(line["norm_amps"]), rel=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    fig = summary["figures"]
    assert fig["converged"] is True and fig["iterations"] >= 1
    assert fig["regulator_taps_pu"] == TAPS
    assert abs(fig["losses_kw"] - ref_losses) <= 0.005 * ref_losses
    assert {"build_ms", "solve_ms"} <= set(summary["wall"])
    assert 0.9 < fig["v_min_pu"] <= fig["v_max_pu"] < 1.1
    assert (summary["params"]["v_min_limit_pu"], summary["params"]["v_max_limit_pu"]) == (0.95, 1.05)
    assert fig["n_voltage_violations"] == opendss_violations(0.95, 1.05)
    assert fig["n_voltage_violations"] == fig["n_undervoltage_nodes"] + fig["n_overvoltage_nodes"]
    over = [b for b in branches if b["loading_pct"] and float(b["loading_pct"]) > 100.0]
    assert fig["n_overloaded_branches"] == len(over) > 0  # IEEE 13's 400 A default ratings are exceeded
    assert fig["max_loading_branch"] in {b["branch_id"] for b in over}
    # rerun: byte-identical CSVs, identical summary apart from the wall block
    assert main(["powerflow", str(path), "--out", str(tmp_path / "b")]) == 0
    for name in ("voltages.csv", "branches.csv"):
        assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    summary.pop("wall"), again.pop("wall")
    assert summary == again


def test_shipped_feeder_works_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["powerflow", "--out", "res"]) == 0  # relative --out stays relative to the caller
    fig = json.loads((tmp_path / "res" / "summary.json").read_text())["figures"]
    assert abs(fig["losses_kw"] - 112.39) < 0.01 and fig["n_nodes"] == 41
    assert main(["powerflow", "--feeder", "ieee13", "--plot"]) == 0
    assert (tmp_path / "voltage_profile.png").stat().st_size > 1000


def test_bad_input_is_a_clear_error_not_a_crash(tmp_path, capsys):
    assert main(["powerflow", str(tmp_path / "missing.dss")]) == 2
    assert "missing.dss" in capsys.readouterr().err
    bad = tmp_path / "bad.dss"
    bad.write_text("new circuit.x\nnew line.l1 bus1=sourcebus bus2=b linecode=nonexistent\n")
    assert main(["powerflow", str(bad)]) == 2
    assert "Error" in capsys.readouterr().err
    assert main(["powerflow", "--feeder", "nope"]) == 2
    assert "ieee13" in capsys.readouterr().err


@pytest.mark.opendss
def test_voltage_limit_flags_override_the_file(tmp_path):
    path = scenario(tmp_path)
    assert main(["powerflow", str(path), "--out", str(tmp_path / "o"), "--v-min-pu", "0.98",
                 "--v-max-pu", "1.04"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert (summary["params"]["v_min_limit_pu"], summary["params"]["v_max_limit_pu"]) == (0.98, 1.04)
    opendss_solution(path)
    assert summary["figures"]["n_voltage_violations"] == opendss_violations(0.98, 1.04) > 0
    assert main(["powerflow", str(path), "--v-min-pu", "1.1", "--v-max-pu", "1.0"]) == 2  # named error


@pytest.mark.opendss
def test_losses_are_opendss_circuit_losses_and_shunt_output_is_apart(tmp_path):
    """`losses_kw`/`losses_kvar` mean what OpenDSS's `Circuit.Losses` means: the series elements
    (lines, transformers), not capacitor output; the capacitors' kvar is `shunt_kvar`."""
    import opendssdirect as dss

    path = scenario(tmp_path)
    assert main(["powerflow", str(path), "--out", str(tmp_path / "o")]) == 0
    fig = json.loads((tmp_path / "o" / "summary.json").read_text())["figures"]
    opendss_solution(path)
    p_w, q_var = dss.Circuit.Losses()
    assert q_var > 0 and fig["losses_kvar"] > 0  # series reactive losses are positive
    assert abs(fig["losses_kw"] - p_w / 1000.0) <= 0.005 * p_w / 1000.0
    assert abs(fig["losses_kvar"] - q_var / 1000.0) <= 0.005 * q_var / 1000.0
    cap_kvar = 0.0
    for name in dss.Capacitors.AllNames():
        dss.Circuit.SetActiveElement(f"capacitor.{name}")
        cap_kvar += sum(dss.CktElement.Powers()[1::2])
    assert cap_kvar < 0 and abs(fig["shunt_kvar"] - cap_kvar) <= 0.005 * abs(cap_kvar)


def heavy_scenario(tmp_path: Path, factor: float) -> Path:
    """The shipped IEEE 13 feeder with every load × factor, taps held."""
    import opendssdirect as dss

    from market.network.data import feeder_path

    master = feeder_path("ieee13")
    dss.Text.Command("clear")
    dss.Text.Command(f'compile "{master}"')
    lines = [f'redirect "{master}"']
    for name in dss.Loads.AllNames():
        dss.Loads.Name(name)
        lines.append(f"edit load.{name} kw={dss.Loads.kW() * factor} kvar={dss.Loads.kvar() * factor}")
    lines.append("set controlmode=off")
    path = tmp_path / f"loads_x{factor:g}.dss"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.opendss
def test_voltages_far_outside_limits_warn_and_are_in_the_summary(tmp_path, capsys):
    assert main(["powerflow", str(heavy_scenario(tmp_path, 50)), "--out", str(tmp_path / "x50")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: voltages far outside the limits" in err, err
    fig = json.loads((tmp_path / "x50" / "summary.json").read_text())["figures"]
    viol = fig["violations"]
    assert viol["far_outside_limits"] is True and fig["v_min_pu"] < 0.2
    assert viol["worst_undervoltage"] == {"location": fig["v_min_node"], "v_pu": fig["v_min_pu"]}
    assert viol["voltage_nodes"] == fig["n_voltage_violations"] > 0
    assert viol["overloaded_branches"] == fig["n_overloaded_branches"] > 0
    # the shipped feeder as it is: no warning, the violations block says so
    assert main(["powerflow", "--out", str(tmp_path / "x1")]) == 0
    assert "warning" not in capsys.readouterr().err
    fig = json.loads((tmp_path / "x1" / "summary.json").read_text())["figures"]
    assert fig["violations"]["far_outside_limits"] is False


def test_voltage_profile_joins_connected_buses_and_labels_the_limits():
    from colorgrid.commands.powerflow import _solve, profile_figure, profile_segments
    from market.network.data import feeder_path

    feeder, _, res, _, _ = _solve(feeder_path("ieee13"), 1e-9, 200, None, None)
    segments = profile_segments(feeder, res)
    index = res.network.index
    # line 632-671 carries all three phases: one segment per phase, ending at 671's |V|
    for ph in (1, 2, 3):
        ends = [seg[1][1] for seg in segments[ph]]
        assert float(res.v_pu[index[("671", ph)]]) in ends
    # 684-611 is phase 3 only
    v611 = float(res.v_pu[index[("611", 3)]])
    assert any(seg[1][1] == v611 for seg in segments[3])
    assert not any(("611", ph) in index for ph in (1, 2))
    fig = profile_figure(feeder, res, (0.95, 1.05))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "lower voltage limit 0.95 pu" in labels and "upper voltage limit 1.05 pu" in labels
    drawn = sum(len(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments"))
    assert drawn == sum(len(v) for v in segments.values()) > 20


def daily_scenario(tmp_path: Path) -> Path:
    """IEEE 13 with its regulators acting, a daily load shape on every load and a PV following
    an irradiance shape with volt-var."""
    master = (FEEDERS / "ieee13" / "IEEE13Nodeckt.dss").resolve()
    path = tmp_path / "daily.dss"
    path.write_text("\n".join([
        f'redirect "{master}"',
        "new loadshape.res npts=24 interval=1 mult=[0.5 0.45 0.42 0.4 0.42 0.5 0.65 0.8 0.85 0.8 0.78 0.76 "
        "0.75 0.74 0.76 0.82 0.92 1.05 1.12 1.15 1.05 0.9 0.72 0.58]",
        "new loadshape.sun npts=24 interval=1 mult=[0 0 0 0 0 0 0.1 0.3 0.5 0.7 0.85 0.95 1 0.95 0.85 0.7 0.5 "
        "0.3 0.1 0 0 0 0 0]",
        "batchedit load..* daily=res",
        "new xycurve.vv npts=4 xarray=[0.9 0.97 1.03 1.1] yarray=[1 0 0 -1]",
        "new pvsystem.pv phases=3 bus1=675 kv=4.16 kva=440 pmpp=400 irradiance=1 daily=sun",
        "new invcontrol.vv mode=voltvar vvc_curve1=vv derlist=[pvsystem.pv]",
    ]) + "\n")
    return path


def test_daily_time_series_writes_its_tables_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["powerflow", str(daily_scenario(tmp_path)), "--mode", "daily", "--steps", "48", "--step-s", "1800",
                 "--watch", "675.1,611.3", "--out", str(out)])
    assert code == 0
    assert "daily time series, 48 steps of 1800 s" in capsys.readouterr().out
    rows = read_csv(out / "timeseries.csv")
    assert len(rows) == 48 and rows[-1]["time_s"] == "86400.0"
    for col in ("step", "time_s", "v_min_pu", "v_max_pu", "violations", "losses_kw", "v_675.1_pu", "v_611.3_pu"):
        assert col in rows[0]
    assert all(float(r["v_min_pu"]) <= float(r["v_675.1_pu"]) <= float(r["v_max_pu"]) for r in rows)
    taps = read_csv(out / "taps.csv")
    assert len(taps) == 48 and {"reg1_tap", "reg2_tap", "reg3_tap"} <= set(taps[0])
    summary = json.loads((out / "summary.json").read_text())
    fig = summary["figures"]
    assert fig["steps"] == 48 and fig["tap_operations"] > 0
    assert fig["energy_losses_kwh"] == pytest.approx(sum(float(r["losses_kw"]) for r in rows) * 0.5)
    assert fig["energy_der_kwh"] > 0
    assert {"timeseries.csv", "taps.csv", "voltage_envelope.png", "taps.png"} <= set(summary["files"])
    assert (out / "voltage_envelope.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, flag", [
    (["--steps", "10"], "--steps"),
    (["--mode", "daily", "--steps", "0"], "--steps"),
    (["--mode", "hourly"], "--mode"),
    (["--mode", "daily", "--step-s", "-5"], "--step-s"),
    (["--mode", "daily", "--steps", "2", "--watch", "nowhere.1"], "--watch"),
])
def test_time_series_flag_errors_are_one_line(tmp_path, capsys, argv, flag):
    code = main(["powerflow", str(daily_scenario(tmp_path))] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err and "Traceback" not in err


@pytest.mark.opendss
def test_yearly_time_series_follows_yearly_shapes_like_opendss(tmp_path, capsys):
    """`--mode yearly` on 8760-point yearly= shapes (IEEE 123 + PV + volt-var, the bench's case):
    two days of 1-h steps, the summary's tap operations equal to OpenDSS's yearly mode's event log."""
    from market.network.opendss_import import compile_dss
    from market.network.qsts_case import write_pv_case
    from market.network.reference import solve_opendss_qsts, tap_operations_logged

    path = write_pv_case(tmp_path, FEEDERS / "ieee123" / "IEEE123Master.dss", "yearly")
    out = tmp_path / "out"
    assert main(["powerflow", path, "--mode", "yearly", "--steps", "48", "--step-s", "3600", "--out", str(out)]) == 0
    assert "yearly time series, 48 steps of 3600 s" in capsys.readouterr().out
    rows = read_csv(out / "timeseries.csv")
    assert len(rows) == 48 and rows[-1]["time_s"] == str(48 * 3600.0)
    fig = json.loads((out / "summary.json").read_text())["figures"]
    compile_dss(path)
    regs = [c[: -len("_tap")] for c in read_csv(out / "taps.csv")[0] if c.endswith("_tap")]
    for _ in solve_opendss_qsts("yearly", 48, 3600.0, regs):
        pass
    assert fig["steps"] == 48 and fig["tap_operations"] == tap_operations_logged() > 0
    assert fig["energy_der_kwh"] > 0
