"""The external-goal hook of `firmware_sim.scenario.run_scenario`: a goal handed in from outside
runs the same closed loop as the built-in one it equals (bit-identical series)."""
from __future__ import annotations

import numpy as np

from cloud.goals import ConstantGoal, PerGroupGoal
from firmware_sim.scenario import ScenarioConfig, run_scenario


def test_external_constant_goal_reproduces_the_fairness_scenario():
    cfg = ScenarioConfig(scenario="fairness", devices=600, groups=2, base=0.6, amplitude=0.0,
                         duration_s=120.0, warmup_s=60.0, seed=3)
    built_in = run_scenario(cfg)
    goal = PerGroupGoal({name: ConstantGoal(0.6 * float(kw))
                         for name, kw in zip(built_in.group_names, built_in.group_kw)})
    external = run_scenario(cfg, goal=goal)
    assert np.array_equal(external.group_goal_kw, built_in.group_goal_kw)
    assert np.array_equal(external.group_achieved_kw, built_in.group_achieved_kw)
    assert np.array_equal(external.group_p_off, built_in.group_p_off)
