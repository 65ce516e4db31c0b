"""Node-level sparse 3-phase Ybus, assembled from element primitives, and its LU factorization.

Unknowns are the voltages of every (bus, node) with node ≠ 0, ordered bus by bus (feeder bus
order) and node by node. Y·V = I_source + I_loads(V): the source enters as its Thevenin
admittance plus a Norton current. Loads and generators are *not* in Y (their currents are
injections), so Y depends on topology, taps and capacitor states only and is factorized once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

from market.network.errors import IslandedSectionError, NonPositiveImpedanceError
from market.network.gcpause import paused
from market.network.locations import LocationIndex
from market.network.model import Feeder
from market.network.primitives import (all_branch_elements, element_primitive, line_yprims, source_norton_a,
                                      source_yprim, transformer_yprims)


@dataclass
class ElementBlock:
    """One element's conductor indices (−1 = ground) and Yprim, for flows after the solve."""
    kind: str
    name: str
    conductors: list[tuple[str, int]]
    index: np.ndarray
    yprim: np.ndarray
    n_terminal1: int  # conductors of terminal 1 (the sending end)
    element: str = ""  # OpenDSS-style id: "line.650632", "transformer.sub", "reactor.x" (branch keys)


@dataclass
class Network:
    feeder: Feeder
    nodes: list[tuple[str, int]]
    index: dict[tuple[str, int], int]
    y: sp.csc_matrix  # network Ybus (lines, transformers, capacitors, source Thevenin)
    ydn: sp.csc_matrix  # fixed load/DER admittance added to the factorized matrix (convergence aid)
    lu: object  # LU of y + ydn
    i_source_a: np.ndarray
    vbase_v: np.ndarray  # line-to-neutral base volts per node
    blocks: list[ElementBlock]
    term_y: sp.csr_matrix  # stacked Yprims: all element conductor currents = term_y @ V
    term_rows: np.ndarray  # global node index (−1 ground) of each stacked row
    source_nodes: np.ndarray
    build_ms: float
    atom_a: np.ndarray | None = None  # build-time load/DER atoms (from/to node, −1 ground) ...
    atom_b: np.ndarray | None = None
    atom_yd: np.ndarray | None = None  # ... and their nominal admittances (S): ydn = C·diag(atom_yd)·Cᵀ
    atoms: object = None  # injections.Atoms of the feeder's loads/DER as they were at build time
    reduced_cache: dict = field(default_factory=dict, repr=False, compare=False)  # solver.solve_reduced

    @property
    def n(self) -> int:
        return len(self.nodes)

    def solve_linear(self, rhs: np.ndarray) -> np.ndarray:
        return self.lu.solve(rhs)

    @cached_property
    def loss_mask(self) -> np.ndarray:
        """Stacked rows that count as losses: every element but shunt reactors (OpenDSS's
        `Circuit.Losses` leaves shunt elements out; their power is consumption, like a load's)."""
        return np.concatenate([np.full(len(b.index), b.kind != "shunt") for b in self.blocks]) if self.blocks \
            else np.zeros(0, bool)

    @cached_property
    def locations(self) -> LocationIndex:
        """Node positions by location id ("671.1") as well as by (bus, node)."""
        return LocationIndex(self.nodes)

    def location_ids(self) -> list[str]:
        """The location id of every node, in node order ("671.1", OpenDSS node notation)."""
        return list(self.locations.ids)

    def index_of(self, location: str | tuple[str, int]) -> int:
        """Position of a node given as "671.1" or ("671", 1); UnknownLocationError if absent."""
        return self.locations.index_of(location)


def node_list(feeder: Feeder) -> list[tuple[str, int]]:
    return [(b.name, k) for b in feeder.buses.values() for k in sorted(b.nodes) if k != 0]


def _primitives(todo, freq_hz: float) -> dict:
    """{(kind, name): (conductors, Yprim)}: lines batched per conductor count, transformers per
    distinct electrical type (primitives.line_yprims / transformer_yprims), the rest one by one."""
    lines = [el for kind, el in todo if kind == "line"]
    trs = [el for kind, el in todo if kind == "transformer"]
    out = {("line", el.name): p for el, p in zip(lines, line_yprims(lines))}
    out.update({("transformer", el.name): p for el, p in zip(trs, transformer_yprims(trs))})
    for kind, el in todo:
        if kind not in ("line", "transformer"):
            out[(kind, el.name)] = element_primitive(kind, el, freq_hz)
    return out


def _fill_blocks(blocks: list, fresh: list[tuple], index) -> None:
    """`_block` for many elements: the node index of every conductor in one pass and one array,
    each block holding its slice."""
    flat = [index.get(c, -1) if c[1] != 0 else -1 for *_, conds, _ in fresh for c in conds]
    idx = np.array(flat, dtype=np.int64)
    at = 0
    for pos, kind, el, conds, yprim in fresh:
        m = len(conds)
        element = f"{getattr(el, 'dss_class', kind)}.{el.name}"
        blocks[pos] = ElementBlock(kind, el.name, conds, idx[at:at + m], np.asarray(yprim, complex),
                                   _n_terminal1(kind, el, conds), element)
        at += m


def _n_terminal1(kind: str, el, conds) -> int:
    if kind == "line":
        return len(el.nodes1)
    if kind == "transformer":
        return len(el.windings[0].nodes)
    return len(el.nodes)


def _check_islands(y: sp.csc_matrix, nodes, source_nodes: np.ndarray) -> None:
    pattern = (abs(y) > 0).astype(np.int8)
    _, labels = connected_components(pattern, directed=False)
    fed = set(labels[source_nodes].tolist())
    bad = [nodes[i] for i in range(len(nodes)) if labels[i] not in fed]
    if bad:
        shown = ", ".join(f"{b}.{k}" for b, k in bad[:10])
        raise IslandedSectionError(f"{len(bad)} node(s) have no path to the source: {shown}")


def build_network(feeder: Feeder, previous: Network | None = None,
                  changed: set[tuple[str, str]] | None = None) -> Network:
    """Assemble Y = Cᵀ·(stacked Yprims), check islands, factorize with SuperLU.

    With `previous` (same topology) and `changed` = {(kind, name)}, only the changed elements'
    Yprims are recomputed (the control loop's tap and capacitor moves), and the island check and
    the nominal load admittance (a convergence aid only) are the previous network's; such a
    network has no build-time `atoms` (solve compiles the feeder's present loads)."""
    with paused():
        return _build_network(feeder, previous, changed)


def _build_network(feeder: Feeder, previous: Network | None, changed: set[tuple[str, str]] | None) -> Network:
    t0 = time.perf_counter()
    nodes = node_list(feeder)
    index = {nd: i for i, nd in enumerate(nodes)}
    reuse = {}
    if previous is not None and previous.nodes == nodes and changed is not None:
        reuse = {(b.kind, b.name): b for b in previous.blocks}
    elements = list(all_branch_elements(feeder))
    todo = [(kind, el) for kind, el in elements if (kind, el.name) not in reuse or (kind, el.name) in changed]
    prims = _primitives(todo, feeder.base_frequency_hz)
    blocks: list[ElementBlock | None] = []
    fresh = []  # (position, kind, element, conductors, Yprim) of the blocks to form
    for kind, el in elements:
        key = (kind, el.name)
        if key in reuse and key not in changed:
            blocks.append(reuse[key])
            continue
        fresh.append((len(blocks), kind, el, *prims[key]))
        blocks.append(None)
    _fill_blocks(blocks, fresh, index)
    n = len(nodes)
    term_y, term_rows = _stack_terminals(blocks, n)
    # Y = Cᵀ·(stacked Yprims·C): C maps every element conductor row to its node (ground rows drop)
    ok = np.nonzero(term_rows >= 0)[0]
    c_t = sp.csr_matrix((np.ones(len(ok)), (term_rows[ok], ok)), shape=(n, len(term_rows)))
    sconds, syp = source_yprim(feeder.source)
    sidx = np.array([index[c] for c in sconds])
    src = sp.coo_matrix((syp.ravel(), (np.repeat(sidx, len(sidx)), np.tile(sidx, len(sidx)))), shape=(n, n))
    y = (c_t @ term_y + src).tocsc()
    y.sum_duplicates()
    if not reuse:  # a tap or capacitor move keeps the connectivity
        _check_islands(y, nodes, sidx)
    i_src = np.zeros(n, complex)
    i_src[sidx] += source_norton_a(feeder.source)
    if reuse and previous.atom_a is not None:  # the previous nominal load admittance: any Yd gives
        ydn, atom_a, atom_b, atom_yd, atoms = previous.ydn, previous.atom_a, previous.atom_b, previous.atom_yd, None
    else:  # the same solution (solver.py injects I(V) − Yd·V), so a tap move need not recompute it
        ydn, (atom_a, atom_b, atom_yd), atoms = load_admittance(feeder, index, n)
    try:
        lu = splu((y + ydn).tocsc())
    except RuntimeError as exc:  # singular factor
        raise NonPositiveImpedanceError(f"Ybus is singular: {exc}") from exc
    vbase = np.array([feeder.buses[b].kv_base_ln * 1000.0 for b, _ in nodes])
    if np.any(vbase <= 0):
        v0 = np.abs(lu.solve(i_src))
        vbase = np.where(vbase > 0, vbase, np.maximum(v0, 1.0))
    ms = (time.perf_counter() - t0) * 1000.0
    return Network(feeder, nodes, index, y, ydn, lu, i_src, vbase, blocks, term_y, term_rows, sidx, ms,
                   atom_a, atom_b, atom_yd, atoms)


def load_admittance(feeder: Feeder, index, n: int):
    """(C·diag(y_d)·Cᵀ, (atom from-nodes, atom to-nodes, y_d), atoms): node matrix C·diag(y_d)·Cᵀ of
    the nominal load/DER admittances at build time, the per-atom admittances (reduced.py) and the
    atoms themselves (`Network.atoms`: a solve right after the build need not compile them again).

    As in OpenDSS, loads and generators are represented in the factorized matrix by a nominal
    admittance (loads: Yeq = conj(S)/Vbase²; generators: |S|/Vbase² conductance) and the solver
    injects only the difference I(V) − y_d·V. The solution is unchanged; the fixed point
    contracts even where node-to-ground paths are weak (3-wire delta systems with wye DER).
    Later load/DER edits keep this matrix (no refactorization) and stay exact."""
    from market.network.injections import GEN, compile_atoms

    at = compile_atoms(feeder, index, n)
    yeq = np.conj(at.s_va) / at.vb ** 2
    yd = np.where(at.kind == GEN, np.abs(at.s_va) / at.vb ** 2, yeq)
    return (at.incidence @ sp.diags(yd) @ at.incidence.T).tocsc(), (at.a, at.b, yd), at


def _stack_terminals(blocks: list[ElementBlock], n: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Stacked Yprims as an (Σ conductors × n) sparse matrix (ground columns dropped), assembled
    per block size in batched numpy: rows r0+i, columns index[j], values Yprim[i, j]."""
    sizes = np.array([len(blk.index) for blk in blocks], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    term_rows = np.concatenate([blk.index for blk in blocks]) if blocks else np.zeros(0, np.int64)
    rows, cols, vals = [], [], []
    for size in np.unique(sizes):
        members = np.nonzero(sizes == size)[0]
        idx = term_rows[starts[members][:, None] + np.arange(size)]  # (L, s) node of each conductor
        yp = np.stack([blocks[i].yprim for i in members])  # (L, s, s)
        r = np.broadcast_to(starts[members][:, None, None] + np.arange(size)[None, :, None], yp.shape)
        c = np.broadcast_to(idx[:, None, :], yp.shape)
        keep = c >= 0
        rows.append(r[keep])
        cols.append(c[keep])
        vals.append(yp[keep])
    total = int(sizes.sum())
    if not rows:
        return sp.csr_matrix((total, n), dtype=complex), term_rows
    mat = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(total, n)).tocsr()
    return mat, term_rows
