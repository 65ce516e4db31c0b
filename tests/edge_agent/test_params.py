"""AgentParams: pinned defaults, ms conversion, errors naming the field."""
import pytest

from edge_agent.params import AgentParams, ParamError


def test_pinned_defaults():
    p = AgentParams()
    assert (p.k, p.round_s, p.t_ef_s, p.t_ev_s, p.t_df_s, p.t_dv_s, p.fail_safe_s) == \
        (3, 2, 120, 60, 120, 60, 60)
    assert p.tier_names == ("green", "yellow", "black") and p.black == 2
    assert (p.round_ms, p.t_ef_ms, p.t_ev_ms, p.t_df_ms, p.t_dv_ms, p.fail_safe_ms) == \
        (2000, 120000, 60000, 120000, 60000, 60000)


@pytest.mark.parametrize("kwargs,field", [
    ({"k": 0}, "k"), ({"k": 2.0}, "k"), ({"k": True}, "k"),
    ({"round_s": 0}, "round_s"), ({"fail_safe_s": -1}, "fail_safe_s"),
    ({"t_ef_s": -0.5}, "t_ef_s"), ({"t_ev_s": float("nan")}, "t_ev_s"),
    ({"t_df_s": "120"}, "t_df_s"), ({"t_dv_s": float("inf")}, "t_dv_s"),
    ({"tier_names": ("a", "b")}, "tier_names"), ({"tier_names": ("a", "", "c")}, "tier_names"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ParamError, match="^%s:" % field):
        AgentParams(**kwargs)


def test_fractional_seconds_and_zero_jitter():
    p = AgentParams(round_s=0.5, t_ev_s=0, t_dv_s=0.0015)
    assert (p.round_ms, p.t_ev_ms, p.t_dv_ms) == (500, 0, 2)


def test_dict_roundtrip_and_unknown_key():
    p = AgentParams(k=4, t_ef_s=90)
    d = p.to_dict()
    assert d["tier_names"] == ["green", "yellow", "red", "black"]
    assert AgentParams.from_dict(d) == p
    with pytest.raises(ParamError, match="^t_xx_s: unknown"):
        AgentParams.from_dict({"t_xx_s": 1})
    with pytest.raises(ParamError, match="^params:"):
        AgentParams.from_dict([1])
