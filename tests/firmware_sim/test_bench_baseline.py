"""The bench's naive baseline does the same work as the vector fleet (an honest comparison):
same per-tier state fractions after the same vector sequence, within statistical bounds."""
import numpy as np

from bench.fleet import P_OFF, P_ON, SHARES, NaiveFleet
from firmware_sim.vector_fleet import VectorFleet


def test_naive_baseline_matches_vector_fleet():
    n, rounds = 3000, 120
    naive = NaiveFleet(n, seed=3)
    vec = VectorFleet(np.ones(n), SHARES, np.random.default_rng(3))
    for m in range(rounds):
        agg = naive.step(2.0 * m, P_ON.tolist(), P_OFF.tolist())
        vec.step(2.0 * m, P_ON, P_OFF)
    naive_frac = np.array(agg) / np.array(agg).sum(axis=1, keepdims=True)
    vec_counts = vec.counts()
    vec_frac = vec_counts / vec_counts.sum(axis=1, keepdims=True)
    # 3000 slices per tier: binomial std of a fraction <= 0.009; kW weights add a little
    np.testing.assert_allclose(naive_frac, vec_frac, atol=0.05)
    assert naive_frac[2, 0] == 1.0                      # black never disabled in both
    assert 0.2 < naive_frac[0, 3] < 0.6                 # a real mix of states after 240 s
