"""A solved state as plain arrays for the market: voltages, flows, currents, loading, violations.

Columns are aligned with two explicit lists: `nodes` (bus, node) / `locations` ("671.1") for the
voltage columns, `lines` (element, node) / `branch_ids` ("line.650632.1") for the branch columns
(the conductor on terminal 1 of each line and transformer; `limits.py` for the row and "end"
definitions). Units are in the names: `v_pu` (pu of the bus base), `line_p_kw`, `line_q_kvar`
(sending end), `i_amps` (|I| at terminal 1, A), `i_to_amps` (|I| at terminal 2, A),
`norm_amps`/`emerg_amps` (terminal-1 ratings, A, 0 = unrated), `loading_pct` /
`emerg_loading_pct` (worst end against normal/emergency ratings, %; 0.0 where `rated` is False).

A snapshot from a linear model (`FakeNetworkModel`) has no currents: `has_currents` is False, the
current and loading fields are None and `overloaded_branches()` raises CurrentsUnavailableError.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.network.errors import NetworkError
from market.network.limits import BranchIndex, NodeLimits, default_limits, loading_pct, row_positions
from market.network.locations import LocationIndex, UnknownLocationError, as_branch_key, branch_id

Key = tuple[str, int]


class CurrentsUnavailableError(NetworkError):
    """The snapshot comes from a model without branch currents (a linear stand-in)."""


@dataclass(frozen=True)
class Overload:
    """A branch row loaded above 100 % of its rating (`rating` is "norm" or "emerg")."""
    branch_id: str
    i_amps: float  # current at the worst end (A)
    rating_amps: float  # that end's rating (A)
    loading_pct: float
    rating: str


@dataclass(frozen=True)
class VoltageViolation:
    """A phase node outside its limits; `side` is "under" (v < v_min_pu) or "over" (v > v_max_pu)."""
    location: str
    v_pu: float
    v_min_pu: float
    v_max_pu: float
    side: str


@dataclass
class BranchCurrents:
    """Per-row currents and loading of a solved network (A, %)."""
    i_amps: np.ndarray
    i_to_amps: np.ndarray
    i_end_amps: np.ndarray  # (R, T) every end, as BranchIndex.end_rows
    loading_pct: np.ndarray
    emerg_loading_pct: np.ndarray


def branch_currents(terminal_currents_a: np.ndarray, index: BranchIndex) -> BranchCurrents:
    mag = np.abs(terminal_currents_a)
    ends = mag[index.end_rows]
    return BranchCurrents(mag[index.rows], mag[index.to_rows], ends, loading_pct(ends, index.end_norm_amps),
                          loading_pct(ends, index.end_emerg_amps))


class Snapshot:
    """Solved state: |V| pu per node, sending-end flows, currents and loading per line·phase, losses."""

    def __init__(self, nodes: list[Key], v_pu: np.ndarray, lines: list[Key], line_p_kw: np.ndarray,
                 losses_kw: float, iterations: int, *, limits: NodeLimits | None = None,
                 line_q_kvar: np.ndarray | None = None,
                 branches: BranchIndex | None = None, currents: BranchCurrents | None = None,
                 locations: LocationIndex | None = None):
        self.nodes, self.v_pu, self.lines, self.line_p_kw = nodes, v_pu, lines, line_p_kw
        self.losses_kw, self.iterations = losses_kw, iterations
        self.line_q_kvar = line_q_kvar
        self._loc = locations if locations is not None else LocationIndex(nodes)
        self.locations = self._loc.ids
        self.branch_ids = [branch_id(e, k) for e, k in lines] if branches is None else branches.ids
        self._line_pos = row_positions(lines) if branches is None else branches.positions
        limits = limits if limits is not None else default_limits(nodes)
        self.v_min_pu, self.v_max_pu, self.v_checked = limits.v_min_pu, limits.v_max_pu, limits.checked
        self._branches, self._currents = branches, currents
        self.has_currents = currents is not None and branches is not None
        have = self.has_currents
        self.i_amps = currents.i_amps if have else None
        self.i_to_amps = currents.i_to_amps if have else None
        self.norm_amps = branches.norm_amps if have else None
        self.emerg_amps = branches.emerg_amps if have else None
        self.rated = branches.rated if have else None
        self.emerg_rated = branches.emerg_rated if have else None
        self.loading_pct = currents.loading_pct if have else None
        self.emerg_loading_pct = currents.emerg_loading_pct if have else None

    # --- lookups ---------------------------------------------------------------------------
    def index_of(self, location: str | Key) -> int:
        """Column of a node: `"671.1"` or `("671", 1)`."""
        return self._loc.index_of(location)

    def indices_of(self, location: str | Key) -> list[int]:
        """Columns of a location; a whole bus `"671"` gives its phase nodes 1–3."""
        return self._loc.indices_of(location)

    def line_index(self, branch: str | Key) -> int:
        """Row of a branch: `"line.650632.1"` or `("line.650632", 1)`."""
        key = as_branch_key(branch)
        try:
            return self._line_pos[key] if key in self._line_pos else self._line_pos[(key[0].lower(), key[1])]
        except KeyError:
            raise UnknownLocationError(f"no branch row {branch!r} (rows are terminal-1 conductors)") from None

    def _need_currents(self) -> None:
        if not self.has_currents:
            raise CurrentsUnavailableError("this snapshot has no branch currents (it comes from a linear model "
                                           "without an AC solution); solve a FeederNetwork for currents")

    def loading(self, branch: str | Key, emergency: bool = False) -> float | None:
        """Loading % of one row against its normal (or emergency) rating; None if unrated."""
        self._need_currents()
        i = self.line_index(branch)
        if not (self.emerg_rated if emergency else self.rated)[i]:
            return None
        return float((self.emerg_loading_pct if emergency else self.loading_pct)[i])

    # --- checks ----------------------------------------------------------------------------
    def overloaded_branches(self, emergency: bool = False) -> list[Overload]:
        """Rated rows above 100 % of their normal (emergency) rating, worst first."""
        self._need_currents()
        pct = self.emerg_loading_pct if emergency else self.loading_pct
        ratings = self._branches.end_emerg_amps if emergency else self._branches.end_norm_amps
        ends = self._currents.i_end_amps
        out = []
        for i in np.nonzero(pct > 100.0)[0]:
            ok = ratings[i] > 0
            worst = int(np.argmax(np.where(ok, ends[i] / np.where(ok, ratings[i], 1.0), -1.0)))
            out.append(Overload(self.branch_ids[i], float(ends[i, worst]), float(ratings[i, worst]), float(pct[i]),
                                "emerg" if emergency else "norm"))
        return sorted(out, key=lambda o: (-o.loading_pct, o.branch_id))

    def voltage_violations(self) -> list[VoltageViolation]:
        """Phase nodes (1–3) with |V| below v_min_pu or above v_max_pu, in node order."""
        v = self.v_pu
        under = self.v_checked & (v < self.v_min_pu)
        over = self.v_checked & (v > self.v_max_pu)
        return [VoltageViolation(self.locations[i], float(v[i]), float(self.v_min_pu[i]), float(self.v_max_pu[i]),
                                 "under" if under[i] else "over")
                for i in np.nonzero(under | over)[0]]


def snapshot_from_result(res, branches: BranchIndex, limits: NodeLimits,
                         locations: LocationIndex | None = None) -> Snapshot:
    """Snapshot of a `solver.PowerFlowResult` (its network must be the one `branches` was built on)."""
    cur = res.terminal_currents()
    s_all_va = res.v_ext()[res.network.term_rows] * np.conj(cur)  # = res.element_powers_va()
    s_va = s_all_va[branches.rows]
    return Snapshot(list(res.network.nodes), res.v_pu, list(branches.keys), s_va.real / 1000.0,
                    float(s_all_va[res.network.loss_mask].sum().real) / 1000.0, res.iterations, limits=limits, line_q_kvar=s_va.imag / 1000.0,
                    branches=branches, currents=branch_currents(cur, branches),
                    locations=locations or res.network.locations)
