"""The tier-slice transition table, tested as a table (STYLE 3)."""
import pytest

from edge_agent import states
from edge_agent.states import DF, DR, EF, ER, OVERRIDE, RELEASE, SWITCH, TIMER

# Full matrix: every (state, trigger) -> destination, or None where no transition exists.
EXPECTED = {
    (EF, SWITCH): DR, (EF, TIMER): None, (EF, OVERRIDE): ER, (EF, RELEASE): None,
    (ER, SWITCH): None, (ER, TIMER): EF, (ER, OVERRIDE): ER, (ER, RELEASE): EF,
    (DF, SWITCH): ER, (DF, TIMER): None, (DF, OVERRIDE): ER, (DF, RELEASE): None,
    (DR, SWITCH): None, (DR, TIMER): DF, (DR, OVERRIDE): ER, (DR, RELEASE): None,
}


def test_state_numbers_and_names_are_pinned():
    assert (EF, ER, DF, DR) == (0, 1, 2, 3)
    assert states.STATE_NAMES == ("EF", "ER", "DF", "DR")
    assert states.ENABLED == (True, True, False, False)
    assert states.FLEXIBLE == (True, False, True, False)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_transition_matrix(key):
    state, trigger = key
    if EXPECTED[key] is None:
        with pytest.raises(states.InvalidTransition, match=r"^state: no transition from"):
            states.next_state(state, trigger)
    else:
        assert states.next_state(state, trigger) == EXPECTED[key]


def test_table_has_exactly_the_expected_rows():
    assert states.TRANSITIONS == {k: v for k, v in EXPECTED.items() if v is not None}


def test_refractory_states_never_switch_and_switching_flips_enabled():
    for s in states.STATES:
        if not states.FLEXIBLE[s]:
            assert (s, SWITCH) not in states.TRANSITIONS
        else:
            to = states.TRANSITIONS[(s, SWITCH)]
            assert states.ENABLED[to] != states.ENABLED[s] and not states.FLEXIBLE[to]


@pytest.mark.parametrize("k,names", [
    (1, ("black",)), (2, ("green", "black")), (3, ("green", "yellow", "black")),
    (4, ("green", "yellow", "red", "black")), (5, ("green", "tier1", "tier2", "tier3", "black")),
])
def test_default_tier_names(k, names):
    assert states.default_tier_names(k) == names


def test_names_of_unknown_numbers():
    assert states.state_name(9) == "?9"
    assert states.trigger_name(-1) == "?-1"
    with pytest.raises(ValueError, match="^k:"):
        states.default_tier_names(0)
