"""The one reconnect policy: capped exponential backoff with equal jitter from the project PRNG."""
import pytest

from edge_agent.prng import Prng
from edge_agent.reconnect import Backoff


def test_delays_double_up_to_the_cap_and_stay_in_the_jitter_band():
    b = Backoff(Prng(5), base_ms=500, cap_ms=8000)
    nominal = [500, 1000, 2000, 4000, 8000, 8000, 8000]
    for n, nom in enumerate(nominal):
        assert b.nominal_ms() == nom
        d = b.failure(1000 * n)
        assert nom // 2 <= d <= nom
        assert b.next_try_ms == 1000 * n + d
        assert not b.due(1000 * n + d - 1) and b.due(1000 * n + d)


def test_jitter_is_the_prng_draw_and_reproducible():
    a, b = Backoff(Prng(9)), Backoff(Prng(9))
    ref = Prng(9)
    for _ in range(10):
        nominal = a.nominal_ms()
        assert a.failure(0) == b.failure(0) == int(nominal * (0.5 + 0.5 * ref.random()))


def test_jitter_spreads_a_fleet():
    delays = {Backoff(Prng(seed), base_ms=1000).failure(0) for seed in range(200)}
    assert len(delays) > 150 and min(delays) >= 500 and max(delays) <= 1000


def test_success_resets():
    b = Backoff(Prng(1))
    for _ in range(5):
        b.failure(0)
    b.success()
    assert b.nominal_ms() == 500 and b.due(0)


def test_bad_settings_refused():
    with pytest.raises(ValueError):
        Backoff(Prng(1), base_ms=0)
    with pytest.raises(ValueError):
        Backoff(Prng(1), base_ms=1000, cap_ms=10)
