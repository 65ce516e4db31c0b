"""Chord (frozen-Jacobian Newton) iteration of the reduced power flow, for warm re-solves.

Unknown: the atoms' compensated currents w̃ (A) with node voltages V(w̃) = V_s + M⁻¹C·w̃ and
branch voltages x(w̃) = x_s + K·w̃ (reduced.py). The implicit-Zbus fixed point is r(w̃) = 0 with

    r(w̃) = w(x(w̃)) − w̃,      G(V(w̃)) − V(w̃) = M⁻¹C·r(w̃)  (the plain step's node change).

The plain step is w̃ ← w̃ + r. The chord step is w̃ ← w̃ − Q·r with Q = (∂r/∂w̃)⁻¹ frozen at one
operating point: ∂r/∂w̃ = D·K − I, where dw = d1·dx + d2·conj(dx) (D, R-linear: conj terms, so Q
is a real 2m×2m matrix) from injections.derivatives. Same fixed point, same test — the step only
changes how fast r goes to zero (typically 2–3 steps after a ±20 % load change instead of 5–6).

Convergence test at every step, as solve_fixed_point's: max_i |(M⁻¹C·r)_i| / Vbase_i < tol_pu,
first through the bound Σ_j colmax_j·|r_j| (reduced.ReducedSystem.node_bound_pu), exactly when the
bound is within 5× of the tolerance; the answer is G(V(w̃)) = V_s + M⁻¹C·w(x(w̃)).
"""
from __future__ import annotations

import math

import numpy as np

from market.network.injections import derivatives
from market.network.reduced import CompensatedCurrents, ReducedSystem, _blocks, _matvec

GJ_MAX = 256  # up to this order the chord inverse is Gauss–Jordan without BLAS (≤ ~40 ms); above, LAPACK
REFRESH_STEPS = 6  # a solve needing more steps marks Q stale (rebuilt at the next warm start)
_BLOCK_REAL = 9215  # s/dgemv run single-threaded below 9216 (= 2304·4) elements


def jacobian_terms(w_of: CompensatedCurrents, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): dw = d1·dx + d2·conj(dx) at branch voltages x (w = y_d·x − I(x); extras: −I)."""
    ma = w_of.ma
    alpha, beta = derivatives(w_of.at, x[:ma])
    d1 = np.asarray(w_of.yd, complex).copy()
    d2 = np.zeros(len(x), complex)
    d1[:ma] -= alpha
    d2[:ma] = -beta
    if len(x) > ma:  # extra node injections: drawn current −conj(S)/conj(x), β = conj(S)/conj(x)²
        d2[ma:] = -np.conj(w_of.s_extra) / np.conj(x[ma:]) ** 2
    return d1, d2


def inverse_without_blas(a: np.ndarray) -> np.ndarray:
    """a⁻¹ by Gauss–Jordan elimination with partial pivoting, in numpy element-wise operations only.

    LAPACK's inverse (and SuperLU's multi-right-hand-side solve on a dense matrix) call threaded
    BLAS-3, which on a loaded 2-core machine turned ~2 ms into 50–500 ms; this takes ~15–20 ms for
    a 190×190 matrix whatever the load, but grows as n³ in Python-level steps (used up to GJ_MAX).
    Raises LinAlgError if a is singular."""
    n = a.shape[0]
    aug = np.hstack((np.asarray(a, float), np.eye(n)))
    scale = np.max(np.abs(aug[:, :n])) or 1.0
    for k in range(n):
        p = k + int(np.argmax(np.abs(aug[k:, k])))
        if abs(aug[p, k]) <= 1e-14 * scale:
            raise np.linalg.LinAlgError("singular chord Jacobian")
        if p != k:  # columns < k are unit vectors e_j (j < k): rows k and p are zero there
            aug[[k, p], k:] = aug[[p, k], k:]
        aug[k, k:] /= aug[k, k]
        col = aug[:, k].copy()
        col[k] = 0.0
        aug[:, k:] -= np.multiply.outer(col, aug[k, k:])
    return aug[:, n:]


class Chord:
    """Q = (D·K − I)⁻¹ in real form, as row blocks (built once per operating point)."""

    def __init__(self, red: ReducedSystem, d1: np.ndarray, d2: np.ndarray):
        k = red.k
        m = red.m
        dk = d1[:, None] * k  # d1·(K dw̃)
        ck = d2[:, None] * np.conj(k)  # d2·conj(K dw̃) = d2·conj(K)·conj(dw̃)
        jac = np.block([[dk.real + ck.real, -dk.imag + ck.imag], [dk.imag + ck.imag, dk.real - ck.real]])
        jac -= np.eye(2 * m)
        jac = -jac  # store −Q
        # float32: Q only preconditions (the fixed point and the test use the float64 K, M⁻¹C and
        # w); half the memory traffic per step. Rows/columns interleaved (re, im per atom) so that
        # a complex vector's float view is the operand, without copies.
        q = inverse_without_blas(jac) if 2 * m <= GJ_MAX else np.linalg.inv(jac)
        order = np.column_stack((np.arange(m), np.arange(m) + m)).ravel()
        self.blocks = _blocks(q[np.ix_(order, order)].astype(np.float32), _BLOCK_REAL)
        self.m = m
        self.buf = np.empty(2 * m, np.float32)
        self.stale = False

    def step(self, r: np.ndarray) -> np.ndarray:
        """−Q·r (the change of w̃); the sign is folded into the stored matrix."""
        d = _matvec(self.blocks, r.view(np.float64).astype(np.float32), self.buf)
        return d.astype(np.float64).view(np.complex128)


def chord_for(red: ReducedSystem, w_of: CompensatedCurrents, v: np.ndarray) -> Chord | None:
    """The cached Chord of `red`, (re)built at node voltages v when missing or stale."""
    ch = red.chord
    if ch is None or ch.stale:
        try:
            ch = Chord(red, *jacobian_terms(w_of, red.branch_v(v)))
        except np.linalg.LinAlgError:  # singular Jacobian: Anderson instead
            ch = None
        red.chord = ch
    return ch


def iterate(red: ReducedSystem, w_of: CompensatedCurrents, ch: Chord, wt: np.ndarray, inv_base: np.ndarray,
            tol_pu: float, max_steps: int,
            x0: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, int, float]:
    """Chord steps from w̃ = wt: (V answer or None, w, steps taken, last test value).

    `x0` = x(wt) if known (Cᵀ·V(wt), one sparse product instead of the dense K·wt)."""
    err = np.inf
    for it in range(1, max_steps + 1):
        x = x0 if it == 1 and x0 is not None else red.x_s + _matvec(red.k_blocks, wt, red.k_buf)
        w = w_of(x)
        r = w - wt
        err = red.node_bound_pu(r, inv_base)
        if not math.isfinite(err):
            return None, w, it, err
        if err < tol_pu:
            return red.node_v(w), w, it, err
        if err < 5.0 * tol_pu:  # the bound may be loose (2–5× here): the exact test costs two products, not a step
            exact = float(np.max(np.abs(_matvec(red.node_blocks, r)) * inv_base))
            if exact < tol_pu:
                return red.node_v(w), w, it, exact
        wt = wt + ch.step(r)
    return None, w, max_steps, err

