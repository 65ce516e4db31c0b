"""Current-injection Newton: the fallback where the implicit-Zbus fixed point does not contract.

The fixed point V ← (Y+Yd)⁻¹(I_src + I(V) + Yd V) stalls or diverges where a DER or load is the
only path from a node to ground (wye DER on a 3-wire delta system: the whole network floats on
the DER's own current, OpenDSS converges to the shifted neutral). Newton solves the same
equations, F(V) = Y V − I_src − I_inj(V) = 0, with the loads' Wirtinger derivatives
(injections.derivatives: dI = α dV + β conj(dV) per atom):

    dF = (Y + C diag(α) Cᵀ) dV + C diag(β) Cᵀ conj(dV)   — real 2n×2n form, SuperLU per step,
with backtracking (the step is halved while ‖F‖ grows). Converged when a full Newton step moves
no node by more than tol (max_i |ΔV_i| / Vbase_i < tol_pu; the answer includes that step, so its
error is of the order of tol²). The fixed point's own test (one plain step G(V) − V = −(Y+Yd)⁻¹F)
is not usable here: where the fixed point does not contract, (Y+Yd)⁻¹ magnifies the roundoff of F.
Where no step reduces ‖F‖ and ‖F‖ is at its roundoff level (100·ε·‖|Y||V| + |I|‖), V is as
accurate as double precision allows (a floating neutral is that ill-conditioned: 1e-8–1e-6 pu)
and is the answer, with `mismatch_pu` the last Newton step; otherwise PowerFlowNotConverged.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from market.network.errors import PowerFlowNotConverged
from market.network.injections import Atoms, derivatives

MAX_HALVINGS = 12
REFINE_STEPS = 2


def _jacobian(net, atoms: Atoms, v: np.ndarray, extra: np.ndarray | None, s_conj: np.ndarray | None):
    v_ext = np.append(v, 0.0)
    alpha, beta = derivatives(atoms, v_ext[atoms.a] - v_ext[atoms.b])
    inc = atoms.incidence
    a_mat = net.y + inc @ sp.diags(alpha) @ inc.T
    b_mat = inc @ sp.diags(beta) @ inc.T
    if extra is not None:  # node injections I = conj(S)/conj(V): dI = −conj(S)/conj(V)² conj(dV)
        d = np.zeros(net.n, complex)
        d[extra] = s_conj / np.conj(v[extra]) ** 2
        b_mat = b_mat + sp.diags(d)
    p, m = (a_mat + b_mat).tocsc(), (a_mat - b_mat).tocsc()
    jac = sp.bmat([[p.real, -m.imag], [p.imag, m.real]], format="csc")
    return jac, splu(jac)


def _roundoff_a(net, v: np.ndarray, inj: np.ndarray) -> float:
    """‖F‖ that double-precision roundoff alone produces: 100·ε·‖|Y|·|V| + |I_src| + |I_inj|‖ (A)."""
    scale = abs(net.y) @ np.abs(v) + np.abs(net.i_source_a) + np.abs(inj)
    return 100.0 * np.finfo(float).eps * float(np.linalg.norm(scale))


def solve_newton(net, atoms: Atoms, tol_pu: float = 1e-9, max_iter: int = 50, v0: np.ndarray | None = None,
                 s_inject_va: np.ndarray | None = None):
    """Newton on F(V) = 0 from v0 (or the solver's start, loads as their nominal admittances)."""
    from market.network.solver import PowerFlowResult  # solver imports this module

    t0 = time.perf_counter()
    extra = s_conj = None
    if s_inject_va is not None and np.any(s_inject_va):
        extra = np.nonzero(s_inject_va)[0]
        s_conj = np.conj(np.asarray(s_inject_va, complex)[extra])
    inv_base = 1.0 / net.vbase_v
    n = net.n

    def injection(v: np.ndarray) -> np.ndarray:
        inj = atoms.injection(np.append(v, 0.0))
        if extra is not None:
            inj[extra] += s_conj / np.conj(v[extra])
        return inj

    def mismatch(v: np.ndarray) -> tuple[np.ndarray, float]:
        f = net.y @ v - net.i_source_a - injection(v)
        norm = float(np.linalg.norm(f))
        return f, (norm if np.isfinite(norm) else np.inf)

    v = net.solve_linear(net.i_source_a) if v0 is None else np.array(v0, dtype=complex)
    f, norm = mismatch(v)
    err = np.inf
    for it in range(1, max_iter + 1):
        if not np.isfinite(norm):
            break
        try:
            jac, lu = _jacobian(net, atoms, v, extra, s_conj)
        except RuntimeError as exc:  # singular Jacobian
            raise PowerFlowNotConverged(f"Newton on {net.feeder.name!r}: singular Jacobian at step {it} ({exc})",
                                        it, err) from exc
        rhs = np.concatenate((-f.real, -f.imag))
        dx = lu.solve(rhs)
        for _ in range(REFINE_STEPS):  # iterative refinement: the Jacobian is ill-conditioned (floating neutral)
            dx += lu.solve(rhs - jac @ dx)
        dv = dx[:n] + 1j * dx[n:]
        err = float(np.max(np.abs(dv) * inv_base))
        if err < tol_pu:  # the full Newton step moves no node by more than tol: converged
            return PowerFlowResult(net, atoms, v + dv, it, err, (time.perf_counter() - t0) * 1000.0,
                                   s_inject_va=s_inject_va, method="newton")
        step = 1.0
        for _ in range(MAX_HALVINGS):
            v_try = v + step * dv
            f_try, norm_try = mismatch(v_try)
            if norm_try < norm:
                break
            step *= 0.5
        else:
            if norm <= _roundoff_a(net, v, injection(v)):  # F is roundoff: as accurate as double precision allows
                return PowerFlowResult(net, atoms, v, it, err, (time.perf_counter() - t0) * 1000.0,
                                       s_inject_va=s_inject_va, method="newton")
            raise PowerFlowNotConverged(
                f"Newton on {net.feeder.name!r}: no descent at step {it} (mismatch {norm:.3g} A, "
                f"Newton step {err:.3g} pu)", it, err)
        v, f, norm = v_try, f_try, norm_try
    raise PowerFlowNotConverged(f"Newton on {net.feeder.name!r} did not converge in {max_iter} steps "
                                f"(last max |dV| = {err:.3g} pu)", max_iter, err)
