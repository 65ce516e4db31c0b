"""edge_agent core checks that run unchanged under CPython (pytest collects the test_*
functions) and MicroPython (``node tools/mpy_wasm/run.mjs tests/edge_agent/mpy/test_core_mpy.py``
runs them all via the __main__ block; an assert failure exits non-zero).

Only the MicroPython-compatible subset of Python is used here: no pytest fixtures, no f-string
``=`` specifiers, plain asserts with messages.
"""
import sys

from edge_agent import states
from edge_agent.device import ConstantDevice, FakeDevice, split_w, shares_to_ppm
from edge_agent.gateway import ControlError, GatewayCore, UnknownDevice
from edge_agent.params import AgentParams, ParamError
from edge_agent.prng import Prng
from edge_agent.states import DF, DR, EF, ER

# First eight outputs of the C reference xoshiro128** (Blackman & Vigna, xoshiro128starstar.c)
# with the state seeded by fmix32(seed + i * 0x9E3779B9), i = 1..4, compiled with gcc.
C_REFERENCE = (
    (1, (2442144158, 3238099751, 3819917871, 2104621829,
         2021136066, 4223536128, 1515984730, 2298887649)),
    (0xDEADBEEF, (2306529437, 2576298207, 1250671110, 2699168992,
                  2319502352, 3183738783, 713926983, 3696815687)),
)

FAST = AgentParams(k=3, t_ef_s=10, t_ev_s=4, t_df_s=6, t_dv_s=2, fail_safe_s=10)


def test_prng_matches_c_reference():
    for seed, expected in C_REFERENCE:
        r = Prng(seed)
        got = tuple(r.next_u32() for _ in range(8))
        assert got == expected, "seed %d: %r" % (seed, got)


def test_prng_draws_in_range():
    r = Prng(3)
    for _ in range(2000):
        x = r.random()
        assert 0.0 <= x < 1.0, x
        y = r.uniform(-2.0, 5.0)
        assert -2.0 <= y < 5.0, y
        n = r.below(7)
        assert 0 <= n < 7, n
        assert 0 <= r.next_u24() < 16777216


TRANSITION_ROWS = (
    # (from, trigger, to)
    (EF, states.SWITCH, DR),
    (DF, states.SWITCH, ER),
    (ER, states.TIMER, EF),
    (DR, states.TIMER, DF),
    (EF, states.OVERRIDE, ER),
    (ER, states.OVERRIDE, ER),
    (DF, states.OVERRIDE, ER),
    (DR, states.OVERRIDE, ER),
    (ER, states.RELEASE, EF),
)


def test_transition_table():
    for frm, trig, to in TRANSITION_ROWS:
        assert states.next_state(frm, trig) == to, (frm, trig)
    assert len(states.TRANSITIONS) == len(TRANSITION_ROWS)
    for frm in states.STATES:
        for trig in states.TRIGGERS:
            if (frm, trig, states.TRANSITIONS.get((frm, trig))) in TRANSITION_ROWS:
                continue
            try:
                states.next_state(frm, trig)
            except states.InvalidTransition:
                continue
            raise AssertionError("unexpected transition %d %d" % (frm, trig))


def test_split_w_sums_exactly():
    for total in (0, 1, 2, 999, 1000, 7201, 123457):
        for shares in ((0.5, 0.3, 0.2), (1 / 3, 1 / 3, 1 / 3), (0.0, 0.0, 1.0), (0.7, 0.0, 0.3)):
            parts = split_w(total, shares_to_ppm(shares, 3))
            assert sum(parts) == total, (total, shares, parts)
            for i in range(3):
                assert abs(parts[i] - total * shares[i]) <= 1, (total, shares, parts)


def _gateway(n=6, seed=5, params=FAST):
    devs = [ConstantDevice("d%02d" % i, 1000 + 100 * i, (0.5, 0.3, 0.2)) for i in range(n)]
    return GatewayCore("gw", devs, params=params, seed=seed)


def test_black_never_disabled_and_refractory_honoured():
    core = _gateway()
    prev = [row[2] for row in core.slice_table()]
    entered = [0] * len(prev)
    t = 0
    for r in range(200):
        t = r * 2000
        core.apply_control([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], t)
        core.step(t)
        for j, row in enumerate(core.slice_table()):
            tier, s, end = row[1], row[2], row[3]
            if tier == 2:
                assert s in (EF, ER), "black slice %d in %s" % (j, states.state_name(s))
            if s != prev[j]:
                if prev[j] in (ER, DR):  # left refractory: its timer must be over
                    assert t >= entered[j], (j, t, entered[j])
                if s in (ER, DR):
                    lo, hi = (FAST.t_ef_ms, FAST.t_ef_ms + FAST.t_ev_ms) if s == ER else \
                        (FAST.t_df_ms, FAST.t_df_ms + FAST.t_dv_ms)
                    assert lo <= end - t <= hi, (j, s, end - t)
                    entered[j] = end
            prev[j] = s


def test_failsafe_reenables_everything():
    core = _gateway()
    core.apply_control([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0)
    core.step(0)
    assert core.aggregate().disabled_w() > 0
    t = 0
    for r in range(1, 40):  # no vector after t = 0: fail-safe from t = 10 s
        t = r * 2000
        core.step(t)
        assert core.failsafe_active == (t >= 10000), t
    agg = core.aggregate()
    assert agg.disabled_w() == 0, agg
    assert agg.enabled_w() == agg.total_w()


def test_override_forces_on_then_releases():
    core = _gateway(n=2)
    core.apply_control([0.0, 0.0, 0.0], [1.0, 1.0, 0.0], 0)
    core.step(0)
    core.override("d01", 9000)
    rows = [row for row in core.slice_table() if row[0] == "d01"]
    assert [row[2] for row in rows] == [ER, ER, ER], rows
    for t in (2000, 4000, 6000, 8000):
        core.apply_control([0.0, 0.0, 0.0], [1.0, 1.0, 0.0], t)
        core.step(t)
        assert [row[2] for row in core.slice_table() if row[0] == "d01"] == [ER, ER, ER]
    core.apply_control([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 10000)
    core.step(10000)
    assert [row[2] for row in core.slice_table() if row[0] == "d01"] == [EF, EF, EF]
    try:
        core.override("nope", 1)
    except UnknownDevice as e:
        assert "device_id" in str(e)
    else:
        raise AssertionError("unknown device accepted")


BAD_VECTORS = (
    # (p_on, p_off, field named in the error)
    ([0.1, 0.2], [0.0, 0.0, 0.0], "p_on"),
    ([0.1, 0.2, 0.3], [0.0, 0.0], "p_off"),
    ([0.1, "x", 0.3], [0.0, 0.0, 0.0], "p_on[1]"),
    ([0.1, 0.2, 0.3], [0.0, float("nan"), 0.0], "p_off[1]"),
    ([0.1, 0.2, 0.3], None, "p_off"),
    ([0.1, True, 0.3], [0.0, 0.0, 0.0], "p_on[1]"),
)


def test_bad_control_vectors_rejected_by_name():
    core = _gateway(n=1)
    core.apply_control([0.5, 0.5, 0.5], [0.25, 0.25, 0.25], 0)
    for p_on, p_off, field in BAD_VECTORS:
        try:
            core.apply_control(p_on, p_off, 1000)
        except ControlError as e:
            assert str(e).startswith(field + ":"), (field, str(e))
        else:
            raise AssertionError("accepted %r %r" % (p_on, p_off))
    assert core.p_on == [0.5, 0.5, 0.5] and core.last_valid_ms == 0
    core.apply_control([-1, 2, 0.5], [7, -3, 1.0], 2000)
    assert core.p_on == [0.0, 1.0, 0.5] and core.p_off == [1.0, 0.0, 0.0]


def test_bad_device_read_does_not_stop_the_round():
    good = FakeDevice("a", (1.0, 0.0, 0.0), [500, 600])
    bad = FakeDevice("b", (0.0, 0.0, 1.0), [800])
    core = GatewayCore("gw", [bad, good], params=FAST, seed=1)
    core.step(0)
    bad.fail_reads = True
    core.step(2000)
    assert core.read_errors == 1 and core.last_error.startswith("b:"), core.last_error
    assert core.aggregate().w[2][EF] == 800  # last good reading kept
    assert core.aggregate().w[0][EF] + core.aggregate().w[0][ER] == 600
    assert good.writes[-1] == (2000, 600)
    try:
        AgentParams(t_ef_s=-1)
    except ParamError as e:
        assert str(e).startswith("t_ef_s:"), str(e)
    else:
        raise AssertionError("negative t_ef_s accepted")


def test_switching_frequency_within_binomial_bounds():
    """First round from all-EF: switch-offs per tier ~ Binomial(n, p_off) (4.5 sigma)."""
    n = 400
    core = _gateway(n=n, seed=31)
    p_off = (0.1, 0.45, 0.9)
    core.apply_control([0.0, 0.0, 0.0], list(p_off), 0)
    agg = core.step(0)
    for i in (0, 1):
        sd = (n * p_off[i] * (1 - p_off[i])) ** 0.5
        assert abs(agg.count[i][DR] - n * p_off[i]) <= 4.5 * sd, (i, agg.count[i][DR])
    assert agg.count[2][DR] == 0


def test_thermostat_hand_computed():
    """4500 W, C = 837 kJ/degC, UA = 3 W/degC, 50 degC in 20 degC, 2 s: +10 m degC, 450 J kept."""
    from edge_agent.device import ThermostaticDevice
    d = ThermostaticDevice("wh", 4500, (1.0, 0.0, 0.0), theta0_c=50.0)
    assert d.read_w(0) == 4500
    d.write(4500, 0)
    d.read_w(2000)
    assert d.theta_mc == 50010 and d._residual_mj == 450000, (d.theta_mc, d._residual_mj)


def test_aggregate_equals_sum_of_slices():
    core = _gateway(n=9, seed=2)
    for r in range(30):
        core.apply_control([0.3, 0.2, 0.1], [0.2, 0.3, 0.4], r * 2000)
        agg = core.step(r * 2000)
        w = [[0, 0, 0, 0] for _ in range(3)]
        enabled = 0
        for row in core.slice_table():
            w[row[1]][row[2]] += row[5]
            if row[2] in (EF, ER):
                enabled += row[5]
        assert agg.w == w, (agg.w, w)
        assert agg.enabled_w() == enabled
        assert agg.total_w() == sum(1000 + 100 * i for i in range(9))


def main():
    names = sorted(n for n in globals() if n.startswith("test_"))
    for name in names:
        globals()[name]()
        print("ok", name)
    print("done", len(names), sys.implementation.name)


if __name__ == "__main__":
    main()
