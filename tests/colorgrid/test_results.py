"""The --out convention: tables, figures, refusal of NaN, reproducible bytes."""
import json
import math

import numpy as np
import pytest

from colorgrid.results import ResultsError, RunOutput


def _run(out, value):
    run = RunOutput(out, "unit", {"n": 3, "x": 0.1}, seed=7)
    run.write_columns("t.csv", {"t_s": np.arange(3) * 2.0, "p_kw": [value, 1 / 3, 2.5]})
    run.figure("rms_pct_of_capacity", np.float64(1 / 7), "%")
    return run.finish()


def test_tables_and_summary(tmp_path):
    summary = _run(tmp_path, 0.1)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "t_s,p_kw"
    assert lines[1] == "0.0,0.1"
    assert float(lines[2].split(",")[1]) == 1 / 3  # shortest repr round-trips exactly
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["figures"]["rms_pct_of_capacity"] == 1 / 7
    assert data["units"]["rms_pct_of_capacity"] == "%"
    assert data["seed"] == 7 and data["params"] == {"n": 3, "x": 0.1}
    assert data["files"] == ["summary.json", "t.csv"]
    assert summary["command"] == "unit"


def test_same_inputs_same_bytes_apart_from_wall(tmp_path):
    _run(tmp_path / "a", 0.1)
    _run(tmp_path / "b", 0.1)
    assert (tmp_path / "a/t.csv").read_bytes() == (tmp_path / "b/t.csv").read_bytes()
    a = json.loads((tmp_path / "a/summary.json").read_text())
    b = json.loads((tmp_path / "b/summary.json").read_text())
    a.pop("wall"), b.pop("wall")
    assert a == b


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_values_are_refused_naming_the_cell(tmp_path, bad):
    with pytest.raises(ResultsError, match=r"t.csv\[0\].p_kw"):
        _run(tmp_path, bad)


def test_row_width_checked(tmp_path):
    run = RunOutput(tmp_path, "unit", {})
    with pytest.raises(ResultsError, match="row 0"):
        run.write_csv("x.csv", ["a", "b"], [[1]])


def test_no_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunOutput(None, "unit", {})
    assert run.write_csv("x.csv", ["a"], [[1]]) is None
    run.finish()
    assert list(tmp_path.iterdir()) == []
