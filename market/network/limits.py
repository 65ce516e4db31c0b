"""Ratings and voltage limits aligned with a network's rows, and loading computed from currents.

Branch rows are the conductors on terminal 1 (the sending end) of every line and transformer,
ground conductors skipped — the rows of `Snapshot.lines` and of the PTDF. For each row, the
"ends" are the conductors in the same position on every terminal of the element: for a line the
far end of the same conductor, for a transformer that phase's conductor on each winding. Each end
has its own rating (a line's normamps on both ends; a transformer winding's own rating), and

    loading_pct = 100 · max over rated ends of |I_end| / rating_end

(the worst end). A row without any rated end — rating 0, or a transformer's neutral conductor
(position ≥ phases: OpenDSS rates phase conductors only) — has no loading: `rated` is False there
and the loading arrays hold 0.0, which the snapshot reports as None (never inf or NaN).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.network.locations import PHASE_NODES, branch_id
from market.network.model import V_MAX_PU, V_MIN_PU, Feeder
from market.network.ybus import Network

Key = tuple[str, int]


@dataclass
class BranchIndex:
    """Rows of the branch table and, per row, the stacked-conductor rows and ratings of its ends."""
    keys: list[Key]  # (element, node) per row, e.g. ("line.650632", 1)
    ids: list[str]  # branch ids, "line.650632.1"
    rows: np.ndarray  # (R,) stacked conductor row of terminal 1 (Network.term_y rows)
    to_rows: np.ndarray  # (R,) the same position on terminal 2 (receiving end / winding 2)
    end_rows: np.ndarray  # (R, T) every terminal's conductor in this position (padded with `rows`)
    end_norm_amps: np.ndarray  # (R, T) rating of each end; 0 = unrated or padding
    end_emerg_amps: np.ndarray
    norm_amps: np.ndarray  # (R,) rating of terminal 1 (A, 0 = unrated)
    emerg_amps: np.ndarray
    positions: dict[Key, int] = field(default_factory=dict, repr=False)  # row by key (also lower-case)

    @property
    def rated(self) -> np.ndarray:
        return np.any(self.end_norm_amps > 0, axis=1)

    @property
    def emerg_rated(self) -> np.ndarray:
        return np.any(self.end_emerg_amps > 0, axis=1)


def _terminal_ratings(feeder: Feeder) -> dict[tuple[str, str], tuple[list[tuple[float, float]], int | None]]:
    """{(kind, name): ([(norm, emerg) per terminal], phases or None when every conductor is rated)}."""
    out: dict[tuple[str, str], tuple[list[tuple[float, float]], int | None]] = {
        ("line", ln.name): ([(ln.norm_amps, ln.emerg_amps)] * 2, None) for ln in feeder.lines}
    for tr in feeder.transformers:
        out[("transformer", tr.name)] = ([(w.norm_amps, w.emerg_amps) for w in tr.windings], tr.phases)
    return out


def build_branch_index(net: Network) -> BranchIndex:
    """The branch rows of `net` (same order as `PowerFlowResult.branch_flows`) with their ratings."""
    keys, rows, ends, norms, emergs = [], [], [], [], []
    by_element = _terminal_ratings(net.feeder)
    r0 = 0
    for blk in net.blocks:
        size = len(blk.index)
        if blk.kind in ("line", "transformer"):
            ratings, phases = by_element[(blk.kind, blk.name)]
            per = blk.n_terminal1
            for j in range(per):
                if blk.conductors[j][1] == 0:
                    continue
                rated = phases is None or j < phases
                keys.append((blk.element, blk.conductors[j][1]))
                rows.append(r0 + j)
                ends.append([r0 + t * per + j for t in range(size // per)])
                norms.append([nm if rated else 0.0 for nm, _ in ratings])
                emergs.append([em if rated else 0.0 for _, em in ratings])
        r0 += size
    width = max((len(e) for e in ends), default=2)
    end_rows = np.array([e + [e[0]] * (width - len(e)) for e in ends], dtype=np.int64).reshape(-1, width)
    pad = lambda vals: np.array([v + [0.0] * (width - len(v)) for v in vals], float).reshape(-1, width)  # noqa: E731
    end_norm, end_emerg = pad(norms), pad(emergs)
    return BranchIndex(keys, [branch_id(e, k) for e, k in keys], np.array(rows, dtype=np.int64),
                       end_rows[:, 1].copy(), end_rows, end_norm, end_emerg,
                       end_norm[:, 0].copy(), end_emerg[:, 0].copy(), row_positions(keys))


def row_positions(keys: list[Key]) -> dict[Key, int]:
    """{(element, node): row}, with the element also lower-cased (branch ids are lower-case)."""
    out = {(e.lower(), k): i for i, (e, k) in enumerate(keys)}
    out.update({key: i for i, key in enumerate(keys)})
    return out


def loading_pct(i_end_amps: np.ndarray, end_rating_amps: np.ndarray) -> np.ndarray:
    """100 · max over rated ends of |I|/rating per row; 0.0 where no end is rated."""
    ok = end_rating_amps > 0
    ratio = np.divide(i_end_amps, end_rating_amps, out=np.zeros_like(i_end_amps), where=ok)
    return 100.0 * ratio.max(axis=1, initial=0.0)


@dataclass
class NodeLimits:
    """Voltage limits per node (pu of the node's base); `checked` marks phase nodes 1–3."""
    v_min_pu: np.ndarray
    v_max_pu: np.ndarray
    checked: np.ndarray


def node_limits(feeder: Feeder, nodes: list[Key]) -> NodeLimits:
    buses = feeder.buses
    return NodeLimits(np.array([buses[b].v_min_pu for b, _ in nodes], float),
                      np.array([buses[b].v_max_pu for b, _ in nodes], float),
                      np.array([k in PHASE_NODES for _, k in nodes], bool))


def default_limits(nodes: list[Key], v_min_pu: float = V_MIN_PU, v_max_pu: float = V_MAX_PU) -> NodeLimits:
    """The same limits on every node (default 0.95–1.05 pu)."""
    n = len(nodes)
    return NodeLimits(np.full(n, float(v_min_pu)), np.full(n, float(v_max_pu)),
                      np.array([k in PHASE_NODES for _, k in nodes], bool))
