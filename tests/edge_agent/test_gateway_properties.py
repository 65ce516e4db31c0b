"""Property test: whatever sequence of rounds, control vectors (valid or not), overrides and
device readings arrives, the core never crashes and keeps its safety invariants."""
from hypothesis import HealthCheck, given, settings, strategies as st

from edge_agent.device import FakeDevice
from edge_agent.gateway import ControlError, GatewayCore
from edge_agent.params import AgentParams
from edge_agent.states import DF, DR, EF, ER

PARAMS = AgentParams(k=3, t_ef_s=6, t_ev_s=4, t_df_s=4, t_dv_s=2, fail_safe_s=8)
DEVICE_IDS = ("a", "b", "c")

probability = st.one_of(st.floats(-1, 2), st.just(float("nan")), st.integers(-2, 3), st.text(max_size=2))
vector = st.one_of(st.lists(probability, min_size=2, max_size=4), st.none())
event = st.one_of(
    st.tuples(st.just("control"), vector, vector),
    st.tuples(st.just("override"), st.sampled_from(DEVICE_IDS + ("zz",)), st.integers(-5000, 30000)),
    st.tuples(st.just("demand"), st.sampled_from(DEVICE_IDS), st.one_of(st.integers(-10, 5000), st.none())),
)
rounds = st.lists(st.tuples(st.integers(0, 5000), st.lists(event, max_size=3)), min_size=1, max_size=40)


class ScriptedDevice(FakeDevice):
    def __init__(self, device_id, shares):
        FakeDevice.__init__(self, device_id, shares, 1000)
        self.next = 1000

    def read_w(self, now_ms):
        return self.next  # may be invalid (negative, None): the core must cope


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=rounds, seed=st.integers(0, 2**32))
def test_invariants_hold_under_any_input(script, seed):
    devs = [ScriptedDevice("a", (0.5, 0.5, 0.0)), ScriptedDevice("b", (0.2, 0.3, 0.5)),
            ScriptedDevice("c", (0.0, 0.0, 1.0))]
    by_id = {d.device_id: d for d in devs}
    core = GatewayCore("gw", devs, params=PARAMS, seed=seed)
    t = 0
    prev = {j: (EF, 0) for j in range(len(core.slice_table()))}
    good_w = {d: 0 for d in DEVICE_IDS}  # no good reading yet: 0 W
    for dt, events in script:
        t += dt
        overridden_now = set()
        for ev in events:
            if ev[0] == "control":
                try:
                    core.apply_control(ev[1], ev[2], t)
                except ControlError:
                    pass
                assert all(0.0 <= p <= 1.0 for p in core.p_on + core.p_off)
                assert core.p_off[2] == 0.0
            elif ev[0] == "override":
                try:
                    core.override(ev[1], t + ev[2])
                    overridden_now.add(ev[1])
                except ValueError:
                    assert ev[1] == "zz"
            else:
                by_id[ev[1]].next = ev[2]
        agg = core.step(t)
        for d in devs:
            if isinstance(d.next, int) and d.next >= 0:
                good_w[d.device_id] = d.next
        assert agg.total_w() == sum(good_w.values())
        assert core.failsafe_active == (core.last_valid_ms is None
                                        or t - core.last_valid_ms >= PARAMS.fail_safe_ms)
        for j, (dev_id, tier, state, end, held, _w) in enumerate(core.slice_table()):
            if tier == 2:
                assert state in (EF, ER)
            if held:
                assert state == ER and end > t
            before, before_end = prev[j]
            if before in (ER, DR) and before_end > t and dev_id not in overridden_now:
                assert state == before  # refractory honoured: no change before the timer ends
            if state in (ER, DR) and not held:
                assert end > t
            if state in (EF, DF):
                assert not held
            prev[j] = (state, end)
        assert sum(sum(row) for row in agg.count) == len(prev)
        if core.failsafe_active:
            assert agg.count[0][DF] + agg.count[1][DF] + agg.count[2][DF] == 0
