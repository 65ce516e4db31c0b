"""cloud.clock: the fixed-speed clock's formula, and the adaptive clock's speed changes —
simulated time continuous and monotonic across a change, in this process and in a spawned child
that was handed the shared speed (as fleet workers are)."""
import multiprocessing as mp
import time

import pytest

from cloud.clock import ClockError, SharedSpeed, SimClock


def test_fixed_clock_formula_and_spec_round_trip():
    origin = int(time.time() * 1000) - 1000
    clock = SimClock(20.0, origin)
    now = clock.now_ms()
    assert 20_000 - 50 <= now - origin <= 20_000 + 20 * 300     # 1 s of wall x 20, some slack
    again = SimClock.from_spec(clock.spec())
    assert (again.speed, again.origin_ms) == (20.0, origin)
    for bad in (0, -1, 1e6, "fast", True):
        with pytest.raises(ClockError, match="speed"):
            SimClock(bad)
    with pytest.raises(ClockError, match="SPEED@ORIGIN_MS"):
        SimClock.from_spec("20")
    with pytest.raises(ClockError, match="adaptive"):
        clock.set_speed(10.0)


def test_speed_change_is_continuous_and_monotonic_in_one_process():
    clock = SimClock.adaptive(20.0)
    readings = []                         # (wall before, simulated, wall after)
    t_end = time.monotonic() + 0.6
    changed_at = None

    def read():
        w0 = time.monotonic()
        v = clock.now_ms()
        readings.append((w0, v, time.monotonic()))

    while time.monotonic() < t_end:
        read()
        if changed_at is None and time.monotonic() > t_end - 0.4:
            changed_at = clock.set_speed(5.0)
            read()
    values = [v for _, v, _ in readings]
    assert values == sorted(values)                                  # never backwards
    # no jump at the change: between two readings simulated time advanced at most by the wall
    # time that bracketed them x 20 (+ 2 ms of rounding); a wrong re-anchor jumps by seconds
    for (a0, v0, _), (_, v1, b1) in zip(readings, readings[1:]):
        assert v1 - v0 <= (b1 - a0) * 1000 * 20 + 2, (v0, v1)
    before = [v for v in values if v <= changed_at]
    after = [v for v in values if v > changed_at]
    assert before and after
    # after the change it runs at 5x: 0.4 s wall ~ 2 s simulated (not 8 s)
    assert 1_000 < values[-1] - changed_at < 4_000
    assert clock.speed == 5.0 and clock.shared.changes == 1
    with pytest.raises(ClockError, match="speed changed"):
        clock.spec()                 # SPEED@ORIGIN no longer describes it: refused, not wrong


def _child(shared: SharedSpeed, spec: str, to_parent, from_parent) -> None:
    clock = SimClock.from_spec(spec, shared)
    readings = []
    while True:
        msg = from_parent.get()
        if msg == "stop":
            break
        v = clock.now_ms()           # read after the parent's reading: must not be smaller
        readings.append((msg, v, clock.speed))
        to_parent.put(v)
    to_parent.put(readings)


def test_speed_change_seen_by_a_spawned_process_continuous_and_ordered():
    ctx = mp.get_context("spawn")
    clock = SimClock.adaptive(20.0, ctx=ctx)
    to_parent, from_parent = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_child, args=(clock.shared, clock.spec(), to_parent, from_parent))
    proc.start()
    try:
        pairs = []
        for i in range(60):
            if i in (20, 40):
                clock.set_speed(clock.speed / 2)          # 20 -> 10 -> 5, mid-exchange
            mine = clock.now_ms()
            from_parent.put(mine)
            theirs = to_parent.get(timeout=30)
            after = clock.now_ms()
            assert mine <= theirs <= after, (i, mine, theirs, after)   # ordered across processes
            pairs.append((mine, theirs))
            time.sleep(0.01)
        from_parent.put("stop")
        readings = to_parent.get(timeout=30)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    values = [v for _, v, _ in readings]
    assert values == sorted(values)
    assert [s for _, _, s in readings[:20]] == [20.0] * 20
    assert [s for _, _, s in readings[40:]] == [5.0] * 20      # the child follows the change
    # continuity: the simulated time the child saw advanced by no more than wall x 20 in all
    assert len(readings) == 60 and values[-1] - values[0] > 0


def test_adaptive_clock_sleeps_follow_a_speed_change():
    clock = SimClock.adaptive(50.0)
    target = clock.now_ms() + 10_000            # 0.2 s of wall at 50x
    clock.set_speed(25.0)                       # ... 0.4 s at 25x
    t0 = time.monotonic()
    clock.sleep_until(target)
    assert clock.now_ms() >= target and time.monotonic() - t0 > 0.3
