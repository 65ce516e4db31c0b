"""Goal schedules: the Protocol, each implementation against hand-computed values."""
from pathlib import Path

import numpy as np
import pytest

from cloud.goals import (ConstantGoal, FakeGoal, FileGoal, GoalError, GoalSchedule, RampGoal,
                         RegulationGoal, StepGoal, load_signal)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "regulation_signal_2s.csv"


def test_all_satisfy_protocol():
    for g in (ConstantGoal(1.0), StepGoal(1, 2, 10), RampGoal(0, 1, 0, 10), FakeGoal(),
              RegulationGoal(10, 2, signal=[0.0, 1.0])):
        assert isinstance(g, GoalSchedule)


def test_constant_and_per_group():
    assert ConstantGoal(5.0).goal_kw("any", 123) == 5.0
    g = ConstantGoal({"bus1.a": 3.0})
    assert g.goal_kw("bus1.a", 0) == 3.0
    with pytest.raises(GoalError, match="bus2"):
        g.goal_kw("bus2", 0)
    with pytest.raises(GoalError, match="kw"):
        ConstantGoal(float("nan"))


def test_step_and_ramp():
    s = StepGoal(10.0, 20.0, step_s=60.0, start_ms=1_000_000)
    assert s.goal_kw("g", 1_000_000 + 59_999) == 10.0
    assert s.goal_kw("g", 1_060_000) == 20.0
    r = RampGoal(0.0, 100.0, ramp_start_s=10.0, ramp_end_s=20.0)
    assert r.goal_kw("g", 5_000) == 0.0
    assert r.goal_kw("g", 15_000) == pytest.approx(50.0)
    assert r.goal_kw("g", 25_000) == 100.0
    with pytest.raises(GoalError, match="ramp_end_s"):
        RampGoal(0, 1, 10, 10)


def test_file_goal(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("# comment\nt_s,goal_kw\n0,5\n10,7.5\n30,1\n")
    g = FileGoal(f, start_ms=0)
    assert [g.goal_kw("x", t) for t in (0, 9_999, 10_000, 29_000, 99_000)] == [5, 5, 7.5, 7.5, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,goal_kw\n0,abc\n")
    with pytest.raises(GoalError, match="line 2"):
        FileGoal(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("time,kw\n0,1\n")
    with pytest.raises(GoalError, match="t_s and goal_kw"):
        FileGoal(cols)


def test_regulation_goal_packaged_signal_matches_shared():
    packaged = load_signal()
    assert packaged.size == 43201
    assert packaged.min() >= -1.05 and packaged.max() <= 1.05   # normalized signal
    np.testing.assert_array_equal(packaged, load_signal(SHARED))
    g = RegulationGoal(base_kw=100.0, amplitude_kw=20.0, start_ms=0, start_s=4.0)
    assert g.goal_kw("g", 0) == pytest.approx(100.0 + 20.0 * packaged[2])
    assert g.goal_kw("g", 2_000) == pytest.approx(100.0 + 20.0 * packaged[3])
    assert g.goal_kw("g", 3_999) == pytest.approx(100.0 + 20.0 * packaged[3])


def test_regulation_wraps_and_bad_signal(tmp_path):
    g = RegulationGoal(0.0, 1.0, signal=[0.1, 0.2, 0.3])
    assert g.goal_kw("g", 6_000) == pytest.approx(0.1)
    f = tmp_path / "s.csv"
    f.write_text("signal\n0.5\nfoo\n")
    with pytest.raises(GoalError, match="line 3"):
        load_signal(f)
    with pytest.raises(GoalError, match="missing.csv"):
        load_signal(tmp_path / "missing.csv")


def test_fake_goal_records():
    f = FakeGoal(default=1.0, values={"a": 2.0})
    assert f.goal_kw("a", 5) == 2.0 and f.goal_kw("b", 6) == 1.0
    assert f.calls == [("a", 5), ("b", 6)]


def test_extrapolated_goal_reads_only_the_past_and_respects_bounds():
    from cloud.goals import ExtrapolatedGoal
    # signal 0, 0.5, 1.0, 0.5 every 2 s on base 100, amplitude 10: 100, 105, 110, 105 kW
    reg = RegulationGoal(100.0, 10.0, signal=[0.0, 0.5, 1.0, 0.5])
    fake = FakeGoal()
    assert isinstance(ExtrapolatedGoal(fake, 2000, 2000), GoalSchedule)
    free = ExtrapolatedGoal(reg, 2000, 2000)
    assert free.goal_kw("g", 2000) == pytest.approx(110.0)     # 105 + (105 - 100)
    assert free.goal_kw("g", 4000) == pytest.approx(115.0)     # 110 + 5: beyond base + amplitude
    bounded = ExtrapolatedGoal(reg, 2000, 2000, lo_kw=90.0, hi_kw=110.0)
    assert bounded.goal_kw("g", 4000) == pytest.approx(110.0)  # a regulation signal stays in ±1
    assert bounded.goal_kw("g", 6000) == pytest.approx(100.0)  # 105 - 5, inside the bounds
    spy = ExtrapolatedGoal(fake, 2000, 2000, lo_kw=-1.0, hi_kw=1.0)
    spy.goal_kw("g", 10_000)
    assert sorted(t for _, t in fake.calls) == [8000, 10_000]   # never a future sample
    with pytest.raises(GoalError, match="lo_kw"):
        ExtrapolatedGoal(reg, 2000, 2000, lo_kw=5.0, hi_kw=1.0)


def test_sources_evaluate_and_per_group_goal():
    from cloud.goals import (GOAL_SOURCES, FractionOfDemand, GoalValue, PerGroupGoal, evaluate)

    per = PerGroupGoal({"671.1": ConstantGoal(5.0), "671.2": FractionOfDemand(ConstantGoal(0.5))})
    assert evaluate(per, "671.1", 0) == GoalValue(5.0, "schedule")
    assert evaluate(per, "671.2", 0, demand_kw=30.0) == GoalValue(15.0, "schedule")
    assert all(g.source("x", 0) in GOAL_SOURCES for g in (ConstantGoal(1.0), FakeGoal()))
    with pytest.raises(GoalError, match="671.3"):
        evaluate(per, "671.3", 0)

    class Broken(GoalSchedule):
        def goal_kw(self, group, t_ms, demand_kw=None):
            return float("nan")
    with pytest.raises(GoalError, match="not finite"):
        evaluate(Broken(), "g", 0)
