"""Implicit Zbus (fixed-point current-injection) power flow on a factorized Ybus.

    V⁽⁰⁾ = (Y+Yd)⁻¹ I_src                    (loads as nominal admittances: sets angles too)
    V⁽ᵏ⁺¹⁾ = (Y+Yd)⁻¹ (I_src + I_inj(V⁽ᵏ⁾) + Yd V⁽ᵏ⁾)   (one forward/back substitution each)
Yd holds the nominal load/DER admittances (OpenDSS's trick, see ybus.load_admittance).
until max_i |V⁽ᵏ⁺¹⁾ − V⁽ᵏ⁾|_i / Vbase_i < tol (per unit). Y is factorized once (ybus.Network);
new loads or DER only rebuild the injection arrays (`injections.compile_atoms`).
Raises PowerFlowNotConverged (never NaN) when the iteration limit is hit or values blow up.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from market.network.errors import PowerFlowNotConverged
from market.network.injections import Atoms, compile_atoms
from market.network.ybus import Network


@dataclass
class PowerFlowResult:
    network: Network
    atoms: Atoms
    v: np.ndarray  # complex node voltages, volts (line-to-ground)
    iterations: int
    mismatch_pu: float
    solve_ms: float
    converged: bool = True
    control_iterations: int = 0
    s_inject_va: np.ndarray | None = None  # extra constant-power injections per node (VA, generation +)
    taps: dict[str, float] = field(default_factory=dict)

    @property
    def v_pu(self) -> np.ndarray:
        return np.abs(self.v) / self.network.vbase_v

    @property
    def angle_deg(self) -> np.ndarray:
        return np.degrees(np.angle(self.v))

    def v_ext(self) -> np.ndarray:
        return np.append(self.v, 0.0)

    def terminal_currents(self) -> np.ndarray:
        """Current (A) into every element conductor, stacked in `network.blocks` order."""
        return self.network.term_y @ self.v

    def element_powers_va(self) -> np.ndarray:
        """Complex power (VA) into every element conductor (stacked as terminal_currents)."""
        return self.v_ext()[self.network.term_rows] * np.conj(self.terminal_currents())

    def losses_va(self) -> complex:
        """Total series + shunt losses of lines, transformers and capacitors (OpenDSS `Losses`)."""
        return complex(self.element_powers_va().sum())

    def branch_flows(self):
        """Rows (element, node, i_amps, p_kw, q_kvar) at the sending end (terminal 1) of lines and
        transformers; ground conductors skipped."""
        cur = self.terminal_currents()
        pw = self.element_powers_va()
        rows = []
        r0 = 0
        for blk in self.network.blocks:
            if blk.kind in ("line", "transformer"):
                for j in range(blk.n_terminal1):
                    _, node = blk.conductors[j]
                    if node == 0:
                        continue
                    rows.append((f"{blk.kind}.{blk.name}", node, abs(cur[r0 + j]),
                                 pw[r0 + j].real / 1000.0, pw[r0 + j].imag / 1000.0))
            r0 += len(blk.index)
        return rows

    def voltage(self, bus: str, node: int) -> complex:
        return complex(self.v[self.network.index[(bus, node)]])


def solve_fixed_point(net: Network, atoms: Atoms, tol_pu: float = 1e-9, max_iter: int = 200,
                      v0: np.ndarray | None = None, anderson: int = 4,
                      s_inject_va: np.ndarray | None = None) -> PowerFlowResult:
    """Fixed point V ← G(V) with Anderson acceleration (depth `anderson`, 0 = plain iteration).

    Anderson: with residuals f_k = G(V_k) − V_k, γ = argmin ‖f_k − ΔF γ‖ over the last m
    differences, V_{k+1} = G(V_k) − ΔG γ; the history is dropped whenever the residual grows.
    The first 4 steps are plain (fast-converging cases never pay for the least squares).
    Convergence is always judged on the plain step max |G(V_k) − V_k| / Vbase < tol_pu.
    `s_inject_va` (per node, VA, generation positive) adds constant-power injections conj(S/V),
    e.g. market schedules at bus·phase, without touching loads or the factorization."""
    extra = None
    if s_inject_va is not None and np.any(s_inject_va):
        extra = np.nonzero(s_inject_va)[0]
        s_conj = np.conj(np.asarray(s_inject_va, complex)[extra])
    t0 = time.perf_counter()
    v = net.solve_linear(net.i_source_a) if v0 is None else np.array(v0, dtype=complex)
    inv_base = 1.0 / net.vbase_v
    v_ext = np.empty(net.n + 1, complex)
    v_ext[-1] = 0.0
    err = np.inf
    hist_f: list[np.ndarray] = []
    hist_g: list[np.ndarray] = []
    last_f = last_g = None
    for it in range(1, max_iter + 1):
        v_ext[:-1] = v
        rhs = net.i_source_a + atoms.injection(v_ext) + net.ydn @ v
        if extra is not None:
            rhs[extra] += s_conj / np.conj(v[extra])
        g = net.solve_linear(rhs)
        f = g - v
        new_err = float(np.max(np.abs(f) * inv_base))
        if not np.isfinite(new_err):
            err = new_err
            break
        if new_err < tol_pu:
            ms = (time.perf_counter() - t0) * 1000.0
            return PowerFlowResult(net, atoms, g, it, new_err, ms, s_inject_va=s_inject_va)
        if anderson and last_f is not None and new_err < err:
            hist_f.append((f - last_f) * inv_base)
            hist_g.append(g - last_g)
            if len(hist_f) > anderson:
                hist_f.pop(0)
                hist_g.pop(0)
        else:
            hist_f.clear()
            hist_g.clear()
        err, last_f, last_g = new_err, f, g
        if hist_f and it >= 5:  # plain steps first (cheap when they suffice); real least squares (the map is R-linear: conj terms), via the m×m Gram matrix
            fr = f * inv_base
            m = len(hist_f)
            gram = np.array([[np.vdot(hist_f[i], hist_f[j]).real for j in range(m)] for i in range(m)])
            rhs = np.array([np.vdot(hist_f[i], fr).real for i in range(m)])
            gamma = np.linalg.lstsq(gram + 1e-14 * np.trace(gram) * np.eye(m), rhs, rcond=None)[0]
            v = g.copy()
            for gi, hg in zip(gamma, hist_g):
                v -= gi * hg
        else:
            v = g
    raise PowerFlowNotConverged(
        f"power flow on {net.feeder.name!r} did not converge in {max_iter} iterations "
        f"(last max |dV| = {err:.3g} pu)", max_iter, err)


def solve(net: Network, tol_pu: float = 1e-9, max_iter: int = 200, atoms: Atoms | None = None,
          v0: np.ndarray | None = None, anderson: int = 4, s_inject_va: np.ndarray | None = None) -> PowerFlowResult:
    """Solve with the feeder's current loads/DER (compiled into injection atoms)."""
    if atoms is None:
        atoms = compile_atoms(net.feeder, net.index, net.n)
    return solve_fixed_point(net, atoms, tol_pu, max_iter, v0, anderson, s_inject_va)
