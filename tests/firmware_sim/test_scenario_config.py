"""Scenario configuration shares the agent's vocabulary: tier names have one definition."""
import pytest

from edge_agent.states import default_tier_names
from firmware_sim import scenario_config


@pytest.mark.parametrize("k, names", [
    (3, ("green", "yellow", "black")),
    (4, ("green", "yellow", "red", "black")),
    (5, ("green", "tier1", "tier2", "tier3", "black")),     # index 0 is green for every k >= 2
])
def test_simulator_tier_names_are_the_agents(k, names):
    assert scenario_config.tier_names is default_tier_names
    assert scenario_config.tier_names(k) == names
