"""Metrics against hand-computed values."""
import math

import numpy as np
import pytest

from cloud.metrics import (MetricsError, block_means, fairness_on_time_std, on_time_std_per_tier,
                           pjm_score, rms_pct_of_capacity, settling_time_s, switches_per_device_hour)


def test_rms_pct():
    assert rms_pct_of_capacity([10, 10, 10, 10], [11, 9, 11, 9], 50.0) == pytest.approx(2.0)
    with pytest.raises(MetricsError, match="capacity"):
        rms_pct_of_capacity([1], [1], 0.0)


def test_block_means_from_2s_samples():
    t = np.arange(0, 20, 2.0)
    np.testing.assert_allclose(block_means(np.arange(10.0), t, 10.0), [2.0, 7.0])


def test_pjm_perfect_response_scores_one():
    t = np.arange(0, 1800, 2.0)
    sig = np.sin(2 * np.pi * t / 420.0)
    s = pjm_score(sig, sig, t)
    assert s.score == pytest.approx(1.0) and s.windows == 6 and s.skipped_windows == 0


def test_pjm_delayed_sine_hand_computed():
    t = np.arange(0, 3600, 10.0)
    sig = np.sin(2 * np.pi * t / 300.0)
    resp = np.sin(2 * np.pi * (t - 30.0) / 300.0)
    s = pjm_score(sig, resp, t)
    assert s.windows == 12
    # r(δ) = cos(2π(30 s - δ)/300 s) over a full period; r + delay per shift δ:
    #   δ=20 s: cos(12°) + 28/30 = 1.9115 beats δ=30 s: 1 + 0.9 = 1.9 and δ=10 s: 1.880
    # windows 0..10 pick δ = 20 s; window 11 (no data after it) only δ = 0: cos(36°) + 1
    c20, c0 = math.cos(2 * math.pi * 10 / 300), math.cos(2 * math.pi * 30 / 300)
    assert s.correlation == pytest.approx((11 * c20 + c0) / 12, abs=1e-9)
    assert s.delay == pytest.approx((11 * (28 / 30) + 1.0) / 12, abs=1e-9)
    prec = 1 - np.mean(np.abs(resp - sig)) / np.mean(np.abs(sig))   # one hour, same every window
    assert s.precision == pytest.approx(prec, abs=1e-9)
    assert s.score == pytest.approx((s.correlation + s.delay + s.precision) / 3, abs=1e-12)


def test_pjm_constant_signal_fails_loudly():
    t = np.arange(0, 600, 2.0)
    with pytest.raises(MetricsError, match="constant"):
        pjm_score(np.zeros_like(t), np.zeros_like(t), t)
    with pytest.raises(MetricsError, match="window"):
        pjm_score(t[:10], t[:10], t[:10])


def test_fairness_and_switches():
    on = np.array([[0.2, 0.5, 1.0], [0.4, 0.5, 1.0], [0.6, 0.5, 1.0], [0.8, 0.5, 1.0]])
    np.testing.assert_allclose(on_time_std_per_tier(on), [np.std([0.2, 0.4, 0.6, 0.8]), 0.0, 0.0])
    assert fairness_on_time_std(on) == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8]))
    kw = np.ones_like(on)
    kw[0, 0] = 0.0                       # device 0 has no green slice: left out
    assert on_time_std_per_tier(on, kw)[0] == pytest.approx(np.std([0.4, 0.6, 0.8]))
    assert switches_per_device_hour([3, 5], 1800.0) == pytest.approx(8.0)


def test_settling_time():
    t = np.arange(0, 20, 2.0)
    g = np.full(10, 10.0)
    a = np.array([10, 10, 5, 7, 9, 9.9, 10.1, 10, 10, 10.0])
    assert settling_time_s(t, g, a, 4.0, 0.5) == pytest.approx(6.0)   # first good sample at t=10
    with pytest.raises(MetricsError, match="not settled"):
        settling_time_s(t, g, np.r_[a[:-1], 0.0], 4.0, 0.5)
