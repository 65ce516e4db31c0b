"""Agent parameters: a plain class with defaults (MicroPython has no dataclasses).

| name          | default | unit | meaning                                                        |
|---------------|---------|------|----------------------------------------------------------------|
| k             | 3       | -    | number of tiers; index 0 green (shed first), k-1 black (never) |
| tier_names    | by k    | -    | colour names, ("green", "yellow", "black") for k = 3           |
| round_s       | 2       | s    | round period                                                   |
| t_ef_s        | 120     | s    | minimum time in ER after switching on                          |
| t_ev_s        | 60      | s    | ER jitter: ER lasts t_ef_s + U(0, t_ev_s)                       |
| t_df_s        | 120     | s    | minimum time in DR after switching off                         |
| t_dv_s        | 60      | s    | DR jitter: DR lasts t_df_s + U(0, t_dv_s)                       |
| fail_safe_s   | 60      | s    | without a valid control vector this long: p_on = 1, p_off = 0  |

Times may be given as int or float seconds; the agent works in integer milliseconds
(``*_ms`` attributes, rounded to the nearest ms). Bad values raise ``ParamError`` naming the field.
"""

from edge_agent.states import default_tier_names


# Refractory defaults, s: the one definition (cloud.estimator.RefractoryParams takes these too).
T_EF_S = 120
T_EV_S = 60
T_DF_S = 120
T_DV_S = 60


class ParamError(ValueError):
    """A parameter is missing, of the wrong type or out of range; the message names the field."""


FIELDS = ("k", "tier_names", "round_s", "t_ef_s", "t_ev_s", "t_df_s", "t_dv_s", "fail_safe_s")
_TIME_FIELDS = ("round_s", "t_ef_s", "t_ev_s", "t_df_s", "t_dv_s", "fail_safe_s")


def _seconds_to_ms(name, value, positive):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError("%s: expected a number of seconds, got %r" % (name, value))
    if value != value or value in (float("inf"), float("-inf")):
        raise ParamError("%s: expected a finite number, got %r" % (name, value))
    if value < 0 or (positive and value == 0):
        raise ParamError("%s: expected %s, got %r" % (name, "> 0" if positive else ">= 0", value))
    return int(round(value * 1000))


class AgentParams:
    """Parameters of a gateway's tier-slice machines (see module docstring for the table)."""

    def __init__(self, k=3, round_s=2, t_ef_s=T_EF_S, t_ev_s=T_EV_S, t_df_s=T_DF_S,
                 t_dv_s=T_DV_S, fail_safe_s=60, tier_names=None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ParamError("k: expected an integer >= 1, got %r" % (k,))
        self.k = k
        if tier_names is None:
            tier_names = default_tier_names(k)
        tier_names = tuple(tier_names)
        if len(tier_names) != k:
            raise ParamError("tier_names: expected %d names, got %d" % (k, len(tier_names)))
        for name in tier_names:
            if not isinstance(name, str) or not name:
                raise ParamError("tier_names: expected non-empty strings, got %r" % (name,))
        self.tier_names = tier_names
        self.round_s = round_s
        self.t_ef_s = t_ef_s
        self.t_ev_s = t_ev_s
        self.t_df_s = t_df_s
        self.t_dv_s = t_dv_s
        self.fail_safe_s = fail_safe_s
        self.round_ms = _seconds_to_ms("round_s", round_s, True)
        self.t_ef_ms = _seconds_to_ms("t_ef_s", t_ef_s, False)
        self.t_ev_ms = _seconds_to_ms("t_ev_s", t_ev_s, False)
        self.t_df_ms = _seconds_to_ms("t_df_s", t_df_s, False)
        self.t_dv_ms = _seconds_to_ms("t_dv_s", t_dv_s, False)
        self.fail_safe_ms = _seconds_to_ms("fail_safe_s", fail_safe_s, True)

    @property
    def black(self):
        """Index of the black tier (k - 1), never disabled."""
        return self.k - 1

    def to_dict(self):
        """Plain dict of the parameters (tier_names as a list), e.g. for a birth message."""
        return {
            "k": self.k,
            "tier_names": list(self.tier_names),
            "round_s": self.round_s,
            "t_ef_s": self.t_ef_s,
            "t_ev_s": self.t_ev_s,
            "t_df_s": self.t_df_s,
            "t_dv_s": self.t_dv_s,
            "fail_safe_s": self.fail_safe_s,
        }

    @classmethod
    def from_dict(cls, data):
        """Build from a dict with any subset of FIELDS; an unknown key raises ParamError."""
        if not isinstance(data, dict):
            raise ParamError("params: expected an object, got %r" % (data,))
        for key in sorted(data):
            if key not in FIELDS:
                raise ParamError("%s: unknown parameter" % (key,))
        return cls(**data)

    def __eq__(self, other):
        return isinstance(other, AgentParams) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "AgentParams(%s)" % ", ".join(
            "%s=%r" % (key, getattr(self, key)) for key in FIELDS
        )
