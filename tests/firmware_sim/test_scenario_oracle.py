"""Foresight bound (firmware_sim.scenario_oracle): hand-computed LP cases and the bound vs the law."""
import numpy as np
import pytest

from cloud.estimator import RefractoryParams
from firmware_sim.scenario import ScenarioConfig, run_scenario
from firmware_sim.scenario_oracle import OracleError, foresight_bound, result_foresight_bound

# 4 s refractory, no spread, 2 s rounds: a slice switched at round j is flexible again at j + 2
SHORT = RefractoryParams(t_ef_s=4.0, t_ev_s=0.0, t_df_s=4.0, t_dv_s=0.0)


def test_reversal_faster_than_refractory_costs_one_full_miss():
    # 10 kW movable, goal 10, 0, 10, 10: what is switched off at round 1 is still DR at round 2,
    # so whatever E_1 = x is chosen, E_2 <= x and |x - 0| + |10 - E_2| >= 10 -> mean 10 / 4 = 2.5
    b = foresight_bound([10.0, 0.0, 10.0, 10.0], [True] * 4, 0.0, 10.0, 2.0, SHORT)
    assert b.min_mean_abs_error_kw == pytest.approx(2.5, abs=1e-7)


def test_reversal_after_refractory_is_free_and_fixed_demand_counts():
    # goal 13, 3, 3, 13 with 3 kW fixed: off at round 1, flexible again at round 3 -> zero error
    b = foresight_bound([13.0, 3.0, 3.0, 13.0], [True] * 4, 3.0, 10.0, 2.0, SHORT)
    assert b.min_mean_abs_error_kw == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(b.enabled_kw, [13.0, 3.0, 3.0, 13.0], atol=1e-7)


def test_unscored_rounds_are_free_and_goal_below_fixed_is_a_floor():
    # goal 0 with 2 kW fixed: error >= 2 in each scored round (round 0 unscored)
    b = foresight_bound([0.0, 0.0, 0.0], [False, True, True], 2.0, 5.0, 2.0, SHORT)
    assert b.min_mean_abs_error_kw == pytest.approx(2.0, abs=1e-7)
    assert b.rms_error_kw == pytest.approx(2.0, abs=1e-7)


def test_bad_input_names_the_problem():
    with pytest.raises(OracleError, match="goal_kw"):
        foresight_bound([1.0, float("nan")], [True, True], 0.0, 1.0)
    with pytest.raises(OracleError, match="goal_kw"):
        foresight_bound([1.0, 2.0], [True], 0.0, 1.0)


def test_bound_is_below_the_law_on_the_fast_reversal_stretch():
    # ±20 % of the packaged PJM day from its start: the stretch at 1100-1300 s of the signal
    # (a +40 % of capacity rise in 40 s, then a fall before the rise's timers expire)
    res = run_scenario(ScenarioConfig(devices=1000, amplitude=0.2, duration_s=1500.0, seed=3))
    b = result_foresight_bound(res)
    s = res.scored
    law_mae = float(np.mean(np.abs(res.achieved_kw[s] - res.goal_kw[s])))
    law_rms = float(np.sqrt(np.mean((res.achieved_kw[s] - res.goal_kw[s]) ** 2)))
    assert 0.0 < b.min_mean_abs_error_kw < law_mae
    assert b.rms_error_kw < law_rms
