"""Tier-slice states, triggers and the transition table (pinned semantics, see README).

A device's demand is split across k priority tiers; each (device, tier) pair is a *tier-slice*
in one of four states, numbered the same everywhere (arrays, reports, CSV):

    EF = 0  enabled, flexible      ER = 1  enabled, refractory
    DF = 2  disabled, flexible     DR = 3  disabled, refractory

Triggers move a slice between states; the table ``TRANSITIONS`` maps (state, trigger) to the next
state and is the only place the machine's shape is written down (``machine.py`` applies it):

    SWITCH    a successful p_on / p_off draw: EF -> DR (switch off), DF -> ER (switch on)
    TIMER     the refractory timer ended:      ER -> EF, DR -> DF
    OVERRIDE  customer forces the device on:   any state -> ER (held until the override ends)
    RELEASE   the override ended:              ER -> EF

A (state, trigger) pair missing from the table is not a transition: ``next_state`` raises
``InvalidTransition`` (for instance SWITCH from a refractory state: refractory is honoured).
Stdlib-free and MicroPython-compatible.
"""

EF = 0
ER = 1
DF = 2
DR = 3
STATES = (EF, ER, DF, DR)
STATE_NAMES = ("EF", "ER", "DF", "DR")
N_STATES = 4

SWITCH = 0
TIMER = 1
OVERRIDE = 2
RELEASE = 3
TRIGGERS = (SWITCH, TIMER, OVERRIDE, RELEASE)
TRIGGER_NAMES = ("SWITCH", "TIMER", "OVERRIDE", "RELEASE")

# Per state: is its demand enabled (served)? may it switch (flexible)?
ENABLED = (True, True, False, False)
FLEXIBLE = (True, False, True, False)

TRANSITIONS = {
    (EF, SWITCH): DR,
    (DF, SWITCH): ER,
    (ER, TIMER): EF,
    (DR, TIMER): DF,
    (EF, OVERRIDE): ER,
    (ER, OVERRIDE): ER,
    (DF, OVERRIDE): ER,
    (DR, OVERRIDE): ER,
    (ER, RELEASE): EF,
}

DEFAULT_TIER_NAMES = {
    1: ("black",),
    2: ("green", "black"),
    3: ("green", "yellow", "black"),
    4: ("green", "yellow", "red", "black"),
}


class InvalidTransition(ValueError):
    """A trigger was applied to a state that has no transition for it."""


def next_state(state: int, trigger: int) -> int:
    """Destination of ``trigger`` from ``state`` per ``TRANSITIONS``; raises InvalidTransition."""
    key = (state, trigger)
    if key not in TRANSITIONS:
        raise InvalidTransition(
            "state: no transition from %s on %s" % (state_name(state), trigger_name(trigger))
        )
    return TRANSITIONS[key]


def state_name(state: int) -> str:
    """Name of a state number ("EF".."DR"), or "?<n>" for an unknown number."""
    if isinstance(state, int) and 0 <= state < N_STATES:
        return STATE_NAMES[state]
    return "?%r" % (state,)


def trigger_name(trigger: int) -> str:
    """Name of a trigger number, or "?<n>" for an unknown number."""
    if isinstance(trigger, int) and 0 <= trigger < len(TRIGGER_NAMES):
        return TRIGGER_NAMES[trigger]
    return "?%r" % (trigger,)


def default_tier_names(k: int) -> tuple:
    """Default colour names for k tiers: index 0 = green (shed first) ... k-1 = black (never shed)."""
    if k in DEFAULT_TIER_NAMES:
        return DEFAULT_TIER_NAMES[k]
    if not isinstance(k, int) or k < 1:
        raise ValueError("k: expected an integer >= 1, got %r" % (k,))
    names = ["green"]
    for i in range(1, k - 1):
        names.append("tier%d" % i)
    names.append("black")
    return tuple(names)
