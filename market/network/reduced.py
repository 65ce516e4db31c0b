"""The implicit-Zbus fixed point reduced to the load/DER atoms' branch voltages (fast re-solves).

With M = Y + C·diag(y_d)·Cᵀ factorized once (C: n×m atom incidence, +1 at a, −1 at b), every
iterate of solver.solve_fixed_point is affine in the atoms' compensated currents
w(x) = y_d·x − I(x) (A, x = Cᵀ·V the atoms' branch voltages, V):

    V = V_s + M⁻¹·C·w̃,   V_s = M⁻¹·I_src,   x = x_s + K·w̃,   K = Cᵀ·M⁻¹·C,   x_s = Cᵀ·V_s
so the iteration needs only the m branch voltages (m = atoms ≪ n nodes), and the plain step's
node change is G(V) − V = M⁻¹C·(w(x) − w̃): the node-space convergence test of
solve_fixed_point can be evaluated at every iterate without forming V (solver.solve_reduced,
chord.iterate).

Small systems keep K (m×m) and M⁻¹C (n×m) dense, applied in row blocks small enough that
OpenBLAS runs them single-threaded (threads only contend on a loaded machine for products this
small); larger ones apply them through the SuperLU factors. CompensatedCurrents evaluates w(x)
for every load model and voltage region as one fused formula.

Constant-power node injections (`s_inject_va`, generation +) are extra atoms node→ground with
I = −conj(S)/conj(V) and y_d = 0 (no voltage band, as in solve_fixed_point).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from market.network.injections import Atoms, currents

DENSE_MAX_ATOMS = 300  # up to this many atoms Cᵀ·M⁻¹·C is kept dense (m×m complex, ≤ 1.5 MB)
_BLOCK = 4095  # elements per matrix-vector block: OpenBLAS runs zgemv single-threaded below 4096
# (threads only contend on a loaded machine for products this small)
DENSE_MAX_NODE_ELEMENTS = 1_000_000  # M⁻¹C kept dense up to n·m elements (16 MB)


def _blocks(mat: np.ndarray, limit: int) -> list[np.ndarray]:
    """Row blocks of at most `limit` elements (C-contiguous)."""
    rows = max(1, limit // max(1, mat.shape[1]))
    return [np.ascontiguousarray(mat[i:i + rows]) for i in range(0, mat.shape[0], rows)]


def _solve_columns(lu, rhs: np.ndarray, chunk: int = 6) -> np.ndarray:
    """lu.solve on a few columns at a time: SuperLU's many-column solve calls BLAS-3, which runs
    threaded above ~2.6·10⁵ multiply-adds and then stalls on a loaded machine (~0.5 s instead of 1 ms)."""
    return np.concatenate([lu.solve(np.ascontiguousarray(rhs[:, j:j + chunk])) for j in range(0, rhs.shape[1], chunk)],
                          axis=1)


def _matvec(blocks: list[np.ndarray], x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ-blocked product (each block below OpenBLAS's threading threshold), into `out` if given."""
    if out is None:
        return np.concatenate([blk @ x for blk in blocks])
    r0 = 0
    for blk in blocks:
        r1 = r0 + blk.shape[0]
        np.matmul(blk, x, out=out[r0:r1])
        r0 = r1
    return out


class ReducedSystem:
    """Cᵀ·M⁻¹·C and x_s for one network and one set of atoms (build-time atoms + extra nodes).

    Dense (m ≤ DENSE_MAX_ATOMS and n·m ≤ DENSE_MAX_NODE_ELEMENTS): K = Cᵀ M⁻¹ C and M⁻¹ C (n×m,
    for the node voltages and the convergence bound) are kept as row blocks; otherwise both are
    applied through the SuperLU factors."""

    def __init__(self, net, a: np.ndarray, b: np.ndarray, dense_max: int = DENSE_MAX_ATOMS):
        n, m = net.n, len(a)
        r = np.concatenate([a, b])
        c = np.concatenate([np.arange(m), np.arange(m)])
        val = np.concatenate([np.ones(m), -np.ones(m)])
        keep = r >= 0
        self.inc = sp.csr_matrix((val[keep], (r[keep], c[keep])), shape=(n, m))
        self.inc_t = self.inc.T.tocsr()
        self.a_ext = np.where(a >= 0, a, n)  # atom ends in V extended by a ground 0 (branch voltages
        self.b_ext = np.where(b >= 0, b, n)  # by two takes: cheaper than a sparse product here)
        self.v_ext = np.zeros(n + 1, complex)
        self.lu = net.lu
        self.m = m
        self.extra = np.zeros(0, np.int64)  # node-injection columns after the atoms (solver._reduced_for)
        self.v_s = net.solve_linear(net.i_source_a)
        self.x_s = self.inc_t @ self.v_s
        self.i_src = net.i_source_a
        self.inv_base = 1.0 / net.vbase_v
        self.k: np.ndarray | None = None
        self.k_blocks: list[np.ndarray] | None = None
        self.node_blocks: list[np.ndarray] | None = None
        self.colmax_pu: np.ndarray | None = None
        self.chord = None  # chord.Chord, built at the first warm start (dense only)
        self.last_v: np.ndarray | None = None  # the last answer V = V_s + M⁻¹C·last_w (dense only)
        self.last_w: np.ndarray | None = None
        if 0 < m <= dense_max and n * m <= DENSE_MAX_NODE_ELEMENTS:
            node = _solve_columns(net.lu, self.inc.toarray().astype(complex))  # n×m, M⁻¹ C
            self.k = np.asarray(self.inc_t @ node)  # m×m, Cᵀ M⁻¹ C
            self.k_blocks = _blocks(self.k, _BLOCK)
            self.k_buf = np.empty(m, complex)  # scratch of x_s + K·w (never returned)
            self.node_blocks = _blocks(node, _BLOCK)

    def branch_v(self, v: np.ndarray) -> np.ndarray:
        """Cᵀ·v: the atoms' branch voltages for node voltages v."""
        self.v_ext[:-1] = v
        return self.v_ext.take(self.a_ext) - self.v_ext.take(self.b_ext)

    def node_part(self, w: np.ndarray) -> np.ndarray:
        """M⁻¹·C·w (V)."""
        return self.lu.solve(self.inc @ w)

    def g_x(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(x_s + Cᵀ M⁻¹ C w, M⁻¹ C w if it was formed on the way, else None)."""
        if self.k_blocks is not None:
            return self.x_s + _matvec(self.k_blocks, w, self.k_buf), None
        u = self.node_part(w)
        return self.x_s + self.branch_v(u), u

    def node_bound_pu(self, dw: np.ndarray, inv_base: np.ndarray) -> float:
        """An upper bound of max_i |(M⁻¹C·dw)_i| / Vbase_i: Σ_j colmax_j·|dw_j|,
        colmax_j = max_i |(M⁻¹C)_ij| / Vbase_i."""
        if self.colmax_pu is None:
            self.colmax_pu = np.max(np.abs(np.concatenate(self.node_blocks)) * inv_base[:, None], axis=0)
        return float(self.colmax_pu @ np.abs(dw))

    def node_v(self, w: np.ndarray) -> np.ndarray:
        """V_s + M⁻¹·C·w (V)."""
        if self.node_blocks is not None:
            return self.v_s + _matvec(self.node_blocks, w)
        return self.v_s + self.node_part(w)


class CompensatedCurrents:
    """w(x) = y_d·x − I(x) per atom (A) for the current loads, as one fused formula

        w = x·(C0 − CP/|x|² − CI/|x|)
    with per-atom coefficients for the voltage region each atom is in (OpenDSS's load models and
    out-of-band fallbacks, injections._fused_constants: in band C0 = y_d − conj(S)/Vb² for Z,
    CP = conj(S) for PQ/generators, CI = conj(S)/Vb for I; below Vlow, between Vlow and Vmin and
    above Vmax the Yeq / interpolation / Yeq/vmax² terms). The region assignment is made at the
    first call and re-made only when some |x| leaves its region's bracket. Motor/CVR loads use
    injections.currents. Extra node injections (constant power, no band) follow the atoms."""

    def __init__(self, at: Atoms, yd: np.ndarray, s_extra_va: np.ndarray | None):
        self.at, self.ma, self.st = at, len(at.a), at.fused
        self.cs = np.conj(at.s_va)
        self.yd = yd
        self.s_extra = None if s_extra_va is None or not len(s_extra_va) else np.asarray(s_extra_va, complex)
        self.lb: np.ndarray | None = None
        self.ub: np.ndarray | None = None
        last = self.st.get("regions")  # the last region assignment (shared by scaled copies)
        if last is not None and self.s_extra is None:
            self._set(*last)

    def _set(self, fa_k: np.ndarray, fb_k: np.ndarray, fc_k: np.ndarray | None, lb: np.ndarray,
             ub: np.ndarray) -> None:
        """Coefficients for a region assignment given by its per-atom factors and brackets."""
        cs = self.cs
        self.c0 = self.yd[:self.ma] - cs * fb_k
        self.cpr = cs * fa_k
        self.ci = None if fc_k is None else cs * fc_k
        self.lb, self.ub = lb, ub

    def _assign(self, mag: np.ndarray) -> None:
        """Region per atom from |x| and the fused coefficients / brackets of those regions."""
        st, ma = self.st, self.ma
        sub = mag[:ma]
        k = ((sub > st["t0_v"]).astype(np.intp) + (sub > st["lo_v"]) + (sub > st["hi_v"])) * ma + np.arange(ma)
        fc_k = st["fc"].take(k)
        regions = (st["fa"].take(k), st["fb"].take(k), fc_k if np.any(fc_k) else None,
                   st["lb"].take(k), st["ub"].take(k))
        self._set(*regions)
        if self.s_extra is None:
            st["regions"] = regions
            return
        e = len(self.s_extra)
        self.c0 = np.concatenate((self.c0, np.zeros(e)))
        self.cpr = np.concatenate((self.cpr, -np.conj(self.s_extra)))
        if self.ci is not None:
            self.ci = np.concatenate((self.ci, np.zeros(e)))
        self.lb = np.concatenate((self.lb, np.full(e, -1.0)))
        self.ub = np.concatenate((self.ub, np.full(e, np.inf)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mag = np.abs(x)
        if self.st["generic"]:
            self._assign(mag)
            w = x * (self.c0 - self.cpr / (mag * mag))
            ma = self.ma
            w[:ma] = self.yd[:ma] * x[:ma] - currents(self.at, x[:ma])
            return w
        if self.lb is None or not ((mag > self.lb) & (mag <= self.ub)).all():
            self._assign(mag)
        if self.ci is None:
            return x * (self.c0 - self.cpr / (mag * mag))
        inv = 1.0 / mag
        return x * (self.c0 - (self.cpr * inv + self.ci) * inv)
