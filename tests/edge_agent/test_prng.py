"""The project-owned PRNG against two independent references: the authors' C code (vectors in
mpy/test_core_mpy.py) and a numpy uint32 re-implementation; plus distribution checks."""
import numpy as np
import pytest

from edge_agent.prng import Prng, fmix32


def numpy_reference(seed, n):
    """xoshiro128** with numpy's wrapping uint32 arithmetic (independent of Python's masking)."""
    u = np.uint32
    z = u(seed & 0xFFFFFFFF)
    s = []
    out = np.empty(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for _ in range(4):
            z = u(z + u(0x9E3779B9))
            x = u((z ^ (z >> u(16))) * u(0x85EBCA6B))
            x = u((x ^ (x >> u(13))) * u(0xC2B2AE35))
            s.append(u(x ^ (x >> u(16))))

        def rotl(x, k):
            return u((x << u(k)) | (x >> u(32 - k)))

        for i in range(n):
            out[i] = u(rotl(u(s[1] * u(5)), 7) * u(9))
            t = u(s[1] << u(9))
            s[2] ^= s[0]
            s[3] ^= s[1]
            s[1] ^= s[2]
            s[0] ^= s[3]
            s[2] ^= t
            s[3] = rotl(s[3], 11)
    return out


@pytest.mark.parametrize("seed", [0, 1, 7, 2**31 - 1, 2**32 - 1, 2**40 + 3, -5])
def test_matches_numpy_reference(seed):
    r = Prng(seed)
    ours = np.array([r.next_u32() for _ in range(3000)], dtype=np.uint64)
    assert np.array_equal(ours, numpy_reference(seed, 3000).astype(np.uint64))


def test_same_seed_same_sequence_and_state_roundtrip():
    a, b = Prng(42), Prng(42)
    assert [a.next_u32() for _ in range(100)] == [b.next_u32() for _ in range(100)]
    state = a.getstate()
    first = [a.random() for _ in range(10)]
    a.setstate(state)
    assert [a.random() for _ in range(10)] == first
    assert Prng(1).next_u32() != Prng(2).next_u32()


def test_fmix32_is_a_bijection_on_a_sample():
    xs = range(0, 2**32, 2**32 // 5000)
    assert len({fmix32(x) for x in xs}) == len(xs)


def test_random_is_uniform():
    """Chi-square over 20 bins of 40 000 draws: 99.9 % critical value of chi2(19) is 43.8."""
    r = Prng(11)
    n, bins = 40000, 20
    counts = np.bincount([int(r.random() * bins) for _ in range(n)], minlength=bins)
    chi2 = float(((counts - n / bins) ** 2 / (n / bins)).sum())
    assert chi2 < 43.8


@pytest.mark.parametrize("n", [1, 2, 7, 61, 60001])
def test_below_range_and_mean(n):
    r = Prng(n)
    xs = np.array([r.below(n) for _ in range(20000)])
    assert xs.min() >= 0 and xs.max() <= n - 1
    if n > 1:  # mean of U{0..n-1} is (n-1)/2, sd (n^2-1)/12 ^ 0.5; 5 standard errors
        se = ((n * n - 1) / 12) ** 0.5 / len(xs) ** 0.5
        assert abs(xs.mean() - (n - 1) / 2) < 5 * se


def test_uniform_bounds_and_errors():
    r = Prng(3)
    xs = [r.uniform(10.0, 12.5) for _ in range(5000)]
    assert min(xs) >= 10.0 and max(xs) < 12.5
    with pytest.raises(ValueError, match="^seed:"):
        Prng("1")
    with pytest.raises(ValueError, match="^n:"):
        r.below(0)
    with pytest.raises(ValueError, match="^state:"):
        r.setstate((1, 2))
