"""SliceMachines: timers, switching, refractory, black tier, draws - tables of cycle inputs."""
import pytest

from edge_agent.machine import TWO24, SliceMachines, probability_to_q
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.states import DF, DR, EF, ER

ALWAYS = TWO24
NEVER = 0


class CountingPrng(Prng):
    """A Prng that counts 24-bit draws (switch decisions) and below() draws (timers)."""

    def __init__(self, seed=1):
        Prng.__init__(self, seed)
        self.u24 = 0
        self.timer = 0

    def next_u24(self):
        self.u24 += 1
        return Prng.next_u24(self)

    def below(self, n):
        self.timer += 1
        return Prng.below(self, n)


@pytest.mark.parametrize("p,q", [
    (0.0, 0), (1.0, TWO24), (0.5, TWO24 // 2), (-0.1, 0), (1.5, TWO24),
    (1e-9, 0), (0.25 + 0.4 / TWO24, TWO24 // 4), (0.25 + 0.6 / TWO24, TWO24 // 4 + 1),
])
def test_probability_to_q(p, q):
    assert probability_to_q(p) == q


def machines(tiers, params=None, seed=1, black=2):
    return SliceMachines(tiers, black, params or AgentParams(), CountingPrng(seed))


def test_one_draw_per_flexible_slice():
    m = machines([0, 0, 1, 1, 2, 2])
    m.state[:] = [EF, ER, DF, DR, EF, EF]
    m.timer_end_ms[:] = [0, 10**9, 0, 10**9, 0, 0]
    m.hold(5, 10**9)  # held: ER, not flexible
    m.step_switching([NEVER] * 3, [NEVER] * 3, 0)
    assert m.prng.u24 == 3 and m.prng.timer == 0  # slices 0, 2, 4
    m.step_switching([ALWAYS] * 3, [ALWAYS] * 3, 0)
    assert m.prng.u24 == 6 and m.prng.timer == 2  # 0 off, 2 on, 4 is black: no timer
    assert m.state == [DR, ER, ER, DR, EF, ER]


ROUND_TABLE = [
    # (state, timer_end_ms, now_ms, q_on, q_off, expected state after timers + switching)
    (ER, 10000, 9999, ALWAYS, ALWAYS, ER),   # refractory honoured until its end
    (DR, 10000, 9999, ALWAYS, ALWAYS, DR),
    (ER, 10000, 10000, ALWAYS, NEVER, EF),   # timer over, no switch wanted
    (DR, 10000, 10000, NEVER, ALWAYS, DF),
    (ER, 10000, 10000, NEVER, ALWAYS, DR),   # left refractory, switched in the same round
    (DR, 10000, 10001, ALWAYS, NEVER, ER),
    (EF, 0, 5, NEVER, ALWAYS, DR),
    (DF, 0, 5, ALWAYS, NEVER, ER),
    (EF, 0, 5, ALWAYS, NEVER, EF),           # p_on does nothing to an enabled slice
    (DF, 0, 5, NEVER, ALWAYS, DF),
]


@pytest.mark.parametrize("state,end,now,q_on,q_off,expected", ROUND_TABLE)
def test_round_table(state, end, now, q_on, q_off, expected):
    m = machines([0])
    m.state[0], m.timer_end_ms[0] = state, end
    m.step_timers(now)
    m.step_switching([q_on] * 3, [q_off] * 3, now)
    assert m.state[0] == expected


def test_black_tier_never_switched_off():
    m = machines([2] * 50)
    for r in range(20):
        m.step_timers(r * 2000)
        m.step_switching([ALWAYS] * 3, [ALWAYS] * 3, r * 2000)
    assert set(m.state) == {EF} and sum(m.switches_off) == 0


@pytest.mark.parametrize("t_s,v_s", [(120, 60), (10, 0), (0, 5), (30, 1)])
def test_refractory_durations_within_t_to_t_plus_v(t_s, v_s):
    params = AgentParams(t_ef_s=t_s, t_ev_s=v_s, t_df_s=t_s + 7, t_dv_s=v_s)
    n = 4000
    m = machines([0] * n, params=params, seed=t_s + v_s)
    m.step_switching([ALWAYS] * 3, [ALWAYS] * 3, 1000)  # all EF -> DR
    off = [e - 1000 for e in m.timer_end_ms]
    m.state[:] = [DF] * n
    m.step_switching([ALWAYS] * 3, [ALWAYS] * 3, 5000)  # all DF -> ER
    on = [e - 5000 for e in m.timer_end_ms]
    for durations, t_ms in ((on, t_s * 1000), (off, (t_s + 7) * 1000)):
        v_ms = v_s * 1000
        assert min(durations) >= t_ms and max(durations) <= t_ms + v_ms
        if v_ms:  # the jitter covers its range: uniform on {0..V}
            assert min(durations) - t_ms < 0.01 * v_ms and t_ms + v_ms - max(durations) < 0.01 * v_ms
            mean = sum(durations) / n
            se = v_ms / 12 ** 0.5 / n ** 0.5
            assert abs(mean - (t_ms + v_ms / 2)) < 5 * se


def test_override_hold_and_release_through_timers():
    m = machines([0, 1])
    m.state[:] = [DR, DF]
    m.timer_end_ms[:] = [50000, 0]
    m.hold(0, 20000)
    m.hold(1, 20000)
    assert m.state == [ER, ER] and m.held == [True, True]
    m.step_timers(19999)
    m.step_switching([ALWAYS] * 3, [ALWAYS] * 3, 19999)
    assert m.state == [ER, ER]
    m.step_timers(20000)  # released to EF even though slice 0's old DR timer ran to 50 s
    assert m.state == [EF, EF] and m.held == [False, False]
    assert m.count(EF) == 2
