"""Anderson acceleration helpers (least squares in real arithmetic: the maps have conj terms)."""
from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dgesv


def anderson_gamma(hist_f: list[np.ndarray], f: np.ndarray) -> np.ndarray:
    """γ = argmin ‖f − ΔF γ‖ in real arithmetic (the map has conj terms): Re(aᴴb) is the
    real dot product of the float views, so the Gram matrix is one small real product (vdot per
    pair for long vectors: a BLAS-3 call on them would spawn threads that contend on a loaded box)."""
    m = len(hist_f)
    if m * f.size <= 2048:
        df = np.array(hist_f).view(float)
        fr = f.view(float)
        gram = df @ df.T
        rhs = df @ fr
    else:
        gram = np.empty((m, m))
        rhs = np.empty(m)
        for i in range(m):
            rhs[i] = np.vdot(hist_f[i], f).real
            for j in range(i, m):
                gram[i, j] = gram[j, i] = np.vdot(hist_f[i], hist_f[j]).real
    reg = 1e-14 * sum(gram[i, i] for i in range(m))
    for i in range(m):
        gram[i, i] += reg
    _lu, _piv, gamma, info = dgesv(gram, rhs)  # direct LAPACK: np.linalg.solve costs ~10 µs of overhead
    if info != 0:
        gamma = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return gamma


def anderson_combine(g: np.ndarray, hist: list[np.ndarray], gamma: np.ndarray) -> np.ndarray:
    """g − Σ γ_i·ΔG_i (the Anderson update; the same γ for every tracked quantity)."""
    out = g.copy()
    for gi, hg in zip(gamma, hist):
        out -= gi * hg
    return out
