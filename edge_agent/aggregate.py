"""Per-tier aggregation of tier-slices into (EF, ER, DF, DR) integer watts and counts.

``Aggregate.w[i][s]`` is the int watts of tier i in state s, ``count[i][s]`` the number of slices,
``kw[i][s]`` = w / 1000 (float kW, derived). Watts are ints so sums over slices, devices and
gateways are exact; enabled demand = EF + ER.
"""

from edge_agent.states import EF, ER, DF, DR, N_STATES, STATE_NAMES


class Aggregate:
    """Per-tier state totals of a gateway (or, after ``merge``, of many gateways)."""

    def __init__(self, k: int, ts_ms=None) -> None:
        self.k = k
        self.ts_ms = ts_ms
        self.w = [[0] * N_STATES for _ in range(k)]
        self.count = [[0] * N_STATES for _ in range(k)]

    def add(self, tier: int, state: int, w: int, n: int = 1) -> None:
        """Add ``w`` int watts and ``n`` slices to (tier, state)."""
        self.w[tier][state] += w
        self.count[tier][state] += n

    @property
    def kw(self) -> list:
        """Float kW table [tier][state] (w / 1000)."""
        return [[x / 1000 for x in row] for row in self.w]

    def enabled_w(self, tier=None) -> int:
        """Enabled watts (EF + ER) of one tier, or of all tiers when tier is None."""
        tiers = range(self.k) if tier is None else (tier,)
        return sum(self.w[i][EF] + self.w[i][ER] for i in tiers)

    def disabled_w(self, tier=None) -> int:
        """Disabled watts (DF + DR) of one tier, or of all tiers when tier is None."""
        tiers = range(self.k) if tier is None else (tier,)
        return sum(self.w[i][DF] + self.w[i][DR] for i in tiers)

    def total_w(self) -> int:
        """All demand, enabled or not, in watts."""
        return sum(sum(row) for row in self.w)

    def merge(self, other: "Aggregate") -> "Aggregate":
        """Add another aggregate with the same k into this one (in place); returns self."""
        if other.k != self.k:
            raise ValueError("k: cannot merge %d tiers into %d" % (other.k, self.k))
        for i in range(self.k):
            for s in range(N_STATES):
                self.w[i][s] += other.w[i][s]
                self.count[i][s] += other.count[i][s]
        return self

    def to_dict(self) -> dict:
        """Plain dict: {"ts_ms", "states", "w": [[...]], "count": [[...]]} (lists [tier][state])."""
        return {
            "ts_ms": self.ts_ms,
            "states": list(STATE_NAMES),
            "w": [list(row) for row in self.w],
            "count": [list(row) for row in self.count],
        }

    def __eq__(self, other):
        return (isinstance(other, Aggregate) and self.k == other.k
                and self.w == other.w and self.count == other.count)

    def __repr__(self):
        return "Aggregate(k=%d, ts_ms=%r, w=%r, count=%r)" % (self.k, self.ts_ms, self.w, self.count)
