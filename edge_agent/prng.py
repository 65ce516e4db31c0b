"""Project-owned PRNG: xoshiro128** with a splitmix-style (murmur3 fmix32) seeder.

All arithmetic is masked to 32 bits, so MicroPython's arbitrary-precision ints produce exactly the
same bits as CPython's: the same seed gives a bit-identical sequence on both runtimes.

Draws used by the agent never go through floats where a decision is made:
  - ``next_u32()``        uniform integer in [0, 2**32)
  - ``next_u24()``        uniform integer in [0, 2**24) (top 24 bits of next_u32)
  - ``below(n)``          integer in [0, n) by multiply-shift, (next_u32 * n) >> 32
  - ``random()``          float in [0, 1) = next_u24 / 2**24 (exact in single and double precision)
  - ``uniform(a, b)``     a + (b - a) * random()
Reference for the generator: Blackman & Vigna, "Scrambled linear pseudorandom number generators"
(2018), xoshiro128** 1.1.
"""

MASK32 = 0xFFFFFFFF
TWO24 = 16777216


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & MASK32


def fmix32(z: int) -> int:
    """murmur3 finaliser: a 32-bit bijective mixer (used to expand the seed)."""
    z &= MASK32
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & MASK32
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & MASK32
    return z ^ (z >> 16)


class Prng:
    """xoshiro128** generator; ``Prng(seed)`` for any int seed (negative or large: masked)."""

    def __init__(self, seed: int = 1) -> None:
        if not isinstance(seed, int):
            raise ValueError("seed: expected an int, got %r" % (seed,))
        self.seed = seed
        z = seed & MASK32
        s = []
        for _ in range(4):
            z = (z + 0x9E3779B9) & MASK32
            s.append(fmix32(z))
        if s[0] == 0 and s[1] == 0 and s[2] == 0 and s[3] == 0:  # pragma: no cover - unreachable
            s[0] = 1
        self._s = s

    def next_u32(self) -> int:
        """Next uniform 32-bit unsigned integer."""
        s = self._s
        result = (_rotl((s[1] * 5) & MASK32, 7) * 9) & MASK32
        t = (s[1] << 9) & MASK32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def next_u24(self) -> int:
        """Uniform integer in [0, 2**24)."""
        return self.next_u32() >> 8

    def below(self, n: int) -> int:
        """Integer in [0, n) for n >= 1 (multiply-shift; bias < n / 2**32)."""
        if n < 1:
            raise ValueError("n: expected >= 1, got %r" % (n,))
        return (self.next_u32() * n) >> 32

    def random(self) -> float:
        """Float in [0, 1) with 24 random bits."""
        return self.next_u24() / TWO24

    def uniform(self, a: float, b: float) -> float:
        """Float a + (b - a) * random(), in [a, b) for a < b."""
        return a + (b - a) * self.random()

    def getstate(self) -> tuple:
        """The four 32-bit state words (a tuple), for checkpoints and tests."""
        return tuple(self._s)

    def setstate(self, state: tuple) -> None:
        """Restore a state from ``getstate``."""
        if len(state) != 4:
            raise ValueError("state: expected 4 words, got %d" % len(state))
        self._s = [int(w) & MASK32 for w in state]
