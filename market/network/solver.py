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
from market.network.newton import solve_newton
from market.network import chord
from market.network.anderson import anderson_combine, anderson_gamma
from market.network.reduced import DENSE_MAX_ATOMS, CompensatedCurrents, ReducedSystem
from market.network.ybus import Network

CHORD_MAX_STEPS = 25  # chord steps before a warm solve falls back to Anderson from v0
DIVERGED_PU = 1e3  # a plain step moving a node by more than this (pu) ends the fixed point: Newton takes over
NEWTON_MAX_STEPS = 50


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
    method: str = "fixed-point"  # "newton" when the fixed point stalled and Newton answered

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
        """Total series + shunt losses of lines, transformers and capacitors (OpenDSS `Losses`:
        shunt reactors are left out, `Network.loss_mask`)."""
        return complex(self.element_powers_va()[self.network.loss_mask].sum())

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
                    rows.append((blk.element, node, abs(cur[r0 + j]),
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
        if not new_err < DIVERGED_PU:  # diverged (or NaN): no point iterating on
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


def _reduced_for(net: Network, atoms: Atoms, extra: np.ndarray | None) -> ReducedSystem | None:
    """The cached ReducedSystem for these atoms plus node-injection columns covering `extra`, or
    None if the atoms do not have the build-time structure (then the Yd compensation per atom is
    unknown). Injection columns are kept once created (a column with S = 0 injects nothing), so an
    injection switched off and on again reuses the reduction and its chord Jacobian."""
    seen = net.reduced_cache.get("atoms")  # the last verified (a, b) arrays (scaled copies share them)
    if seen is None or seen[0] is not atoms.a or seen[1] is not atoms.b:
        if net.atom_a is None or not (np.array_equal(atoms.a, net.atom_a) and np.array_equal(atoms.b, net.atom_b)):
            return None
        net.reduced_cache["atoms"] = (atoms.a, atoms.b)
    cached = net.reduced_cache.get("system")
    want = frozenset() if extra is None else frozenset(extra.tolist())
    if cached is None or not want <= cached[0]:
        have = cached[0] if cached is not None else frozenset()
        nodes = np.array(sorted(want | have), dtype=np.int64)
        red = ReducedSystem(net, np.concatenate((atoms.a, nodes)), np.concatenate((atoms.b, np.full(len(nodes), -1))))
        red.extra = nodes
        cached = (frozenset(nodes.tolist()), red)
        net.reduced_cache["system"] = cached
    return cached[1]


def solve_reduced(net: Network, atoms: Atoms, tol_pu: float = 1e-9, max_iter: int = 200,
                  v0: np.ndarray | None = None, anderson: int = 4,
                  s_inject_va: np.ndarray | None = None) -> PowerFlowResult | None:
    """solve_fixed_point's iteration, carried on the atoms' branch voltages x (reduced.py).

    Every iterate is V_k = V_s + M⁻¹C·w̃_k (w̃_k: the same Anderson combination of past w(x) as
    x̃_k of past G_x; tracked as w̃ when dense, as M⁻¹C·w̃ otherwise), so the node-space test of
    solve_fixed_point, max_i |G(V_k) − V_k|_i / Vbase_i < tol_pu with G(V_k) − V_k = M⁻¹C(w(x̃_k) − w̃_k),
    is evaluated at every step (dense: through an upper bound, exactly when the bound is not
    conclusive) and the answer is G(V_k). A warm start V_0 = v0 is tested exactly at step 1.
    Anderson (least squares on the x residuals, pu of each atom's base) from step 2. On dense
    systems warm starts, and flat starts once a chord Jacobian exists, take chord steps instead
    (chord.py). None if the atoms do not have the network's build-time structure."""
    t0 = time.perf_counter()
    injecting = s_inject_va is not None and np.any(s_inject_va)
    red = _reduced_for(net, atoms, np.nonzero(s_inject_va)[0] if injecting else None)
    if red is None:
        return None
    extra, s_x = red.extra, None
    if len(extra):  # injection columns: S per column (0 where nothing is injected now)
        s_x = np.asarray(s_inject_va, complex)[extra] if injecting else np.zeros(len(extra), complex)
    yd = net.atom_yd if s_x is None else np.concatenate((net.atom_yd, np.zeros(len(extra))))
    w_of = CompensatedCurrents(atoms, yd, s_x)
    vb = atoms.vb if s_x is None else np.concatenate((atoms.vb, net.vbase_v[extra]))
    inv_vb = 1.0 / vb
    inv_base = red.inv_base
    dense = red.k_blocks is not None
    used = 0  # steps spent by chord attempts that gave up (counted against max_iter)
    if dense and v0 is not None:
        res = _solve_chord(net, atoms, red, w_of, v0, inv_vb, inv_base, tol_pu, max_iter, s_inject_va, t0)
        if isinstance(res, PowerFlowResult):
            return res
        used = res
    if dense and v0 is None and red.chord is not None and not red.chord.stale:  # flat start, chord steps
        wt = np.zeros(red.m, complex)  # V_s exactly: the flat start of solve_fixed_point
        v_new, w, used, err = chord.iterate(red, w_of, red.chord, wt, inv_base, tol_pu, min(CHORD_MAX_STEPS, max_iter),
                                            red.x_s)
        if v_new is not None:
            red.last_v, red.last_w = v_new, w
            return PowerFlowResult(net, atoms, v_new, used, err, (time.perf_counter() - t0) * 1000.0,
                                   s_inject_va=s_inject_va)
        red.chord.stale = True
    if v0 is None:
        x, track = red.x_s, (np.zeros(red.m, complex) if dense else np.zeros(net.n, complex))
    else:
        v0 = np.asarray(v0, complex)
        x, track = red.branch_v(v0), None
    err = np.inf
    hist_f: list[np.ndarray] = []
    hist_g: list[np.ndarray] = []
    hist_t: list[np.ndarray] = []
    last_f = last_g = last_t = None
    for it in range(used + 1, max_iter + 1):
        w = w_of(x)
        gx, u = red.g_x(w)
        f = (gx - x) * inv_vb
        new_err = float(np.max(np.abs(f)))
        if not new_err < DIVERGED_PU:
            err = new_err
            break
        t_new = w if dense else u  # the tracked quantity of G(V_k)
        node_err, v_new = _node_test(red, w, u, track, v0, inv_base, tol_pu, new_err)
        if node_err < tol_pu:
            if dense:
                red.last_v, red.last_w = v_new, w
            ms = (time.perf_counter() - t0) * 1000.0
            return PowerFlowResult(net, atoms, v_new, it, node_err, ms, s_inject_va=s_inject_va)
        if anderson and last_f is not None and new_err < err:
            hist_f.append(f - last_f)
            hist_g.append(gx - last_g)
            hist_t.append(t_new - last_t)
            if len(hist_f) > anderson:
                hist_f.pop(0)
                hist_g.pop(0)
                hist_t.pop(0)
        else:
            hist_f.clear()
            hist_g.clear()
            hist_t.clear()
        err, last_f, last_g, last_t = new_err, f, gx, t_new
        if hist_f and it >= used + 2:
            gamma = anderson_gamma(hist_f, f)
            x, track = anderson_combine(gx, hist_g, gamma), anderson_combine(t_new, hist_t, gamma)
        else:
            x, track = gx, t_new
    raise PowerFlowNotConverged(
        f"power flow on {net.feeder.name!r} did not converge in {max_iter} iterations "
        f"(last max |dV| = {err:.3g} pu)", max_iter, err)


def _solve_chord(net: Network, atoms: Atoms, red: ReducedSystem, w_of: CompensatedCurrents, v0: np.ndarray,
                 inv_vb: np.ndarray, inv_base: np.ndarray, tol_pu: float, max_iter: int,
                 s_inject_va: np.ndarray | None, t0: float) -> PowerFlowResult | int:
    """Warm start on a dense system by chord steps (chord.py). From the previous answer (v0 is it)
    the iterate is w̃ = its w; from any other v0 the first step is the plain one, tested exactly
    at V_0 = v0 as in solve_fixed_point. If the chord steps do not converge within
    CHORD_MAX_STEPS, the number of steps spent (Anderson then takes over from v0)."""
    v0 = np.asarray(v0)
    it0 = 0
    x_start = None
    if v0 is red.last_v:
        wt = red.last_w
        x_start = red.branch_v(v0)  # = x_s + K·wt: v0 = V_s + M⁻¹C·wt
    else:
        x0 = red.branch_v(v0)
        wt = w_of(x0)
        it0 = 1
        gx, _ = red.g_x(wt)
        if float(np.max(np.abs(gx - x0) * inv_vb)) < tol_pu:
            v_new = red.node_v(wt)
            node_err = float(np.max(np.abs(v_new - v0) * inv_base))
            if node_err < tol_pu:
                red.last_v, red.last_w = v_new, wt
                return PowerFlowResult(net, atoms, v_new, 1, node_err, (time.perf_counter() - t0) * 1000.0,
                                       s_inject_va=s_inject_va)
    ch = chord.chord_for(red, w_of, v0)
    if ch is None:
        return it0
    v_new, w, steps, err = chord.iterate(red, w_of, ch, wt, inv_base, tol_pu, min(CHORD_MAX_STEPS, max_iter - it0),
                                         x_start)
    if v_new is None:
        ch.stale = True
        return it0 + steps
    if it0 + steps > chord.REFRESH_STEPS:
        ch.stale = True
    red.last_v, red.last_w = v_new, w
    return PowerFlowResult(net, atoms, v_new, it0 + steps, err, (time.perf_counter() - t0) * 1000.0,
                           s_inject_va=s_inject_va)


def _node_test(red: ReducedSystem, w: np.ndarray, u: np.ndarray | None, track: np.ndarray | None,
               v0: np.ndarray | None, inv_base: np.ndarray, tol_pu: float,
               x_err: float) -> tuple[float, np.ndarray | None]:
    """(max_i |G(V_k) − V_k|_i / Vbase_i or an upper bound of it, G(V_k) if below tol_pu).

    Dense: the cheap bound first; the exact product only when the bound fails but the x residual
    says the iterate may have converged (an exact test that fails costs a product, not a step)."""
    if red.k_blocks is None:  # sparse: u = M⁻¹C·w(x̃_k) is at hand, track = M⁻¹C·w̃_k (or v0 − V_s)
        dv = u - track if track is not None else red.v_s + u - v0
        return float(np.max(np.abs(dv) * inv_base)), red.v_s + u
    if track is not None:
        bound = red.node_bound_pu(w - track, inv_base)
        if bound < tol_pu:
            return bound, red.node_v(w)
        if x_err >= tol_pu:
            return np.inf, None
        v_new = red.node_v(w)
        return float(np.max(np.abs(v_new - red.node_v(track)) * inv_base)), v_new
    if x_err >= tol_pu:
        return np.inf, None
    v_new = red.node_v(w)
    return float(np.max(np.abs(v_new - v0) * inv_base)), v_new


def solve(net: Network, tol_pu: float = 1e-9, max_iter: int = 200, atoms: Atoms | None = None,
          v0: np.ndarray | None = None, anderson: int = 4, s_inject_va: np.ndarray | None = None,
          method: str = "auto") -> PowerFlowResult:
    """Solve with the feeder's current loads/DER (compiled into injection atoms).

    method "reduced" (reduced.py, chord.py) or "plain" (solve_fixed_point, node space): the same
    fixed point and convergence test. "auto" takes the reduced one whenever the atoms have the
    build-time structure (always, unless loads/DER were added to the feeder after the build),
    except for the first solve of a small network, where building the dense reduction (~1–5 ms)
    would cost more than it saves (networks solved once: the control loop's tap moves).

    Warm starts: pass v0 = the previous result's `v` (the market's re-solves do); on small systems
    this resumes from the previous iterate exactly and takes chord steps (chord.py)."""
    if atoms is None:
        atoms = compile_atoms(net.feeder, net.index, net.n)
    if method not in ("auto", "reduced", "plain"):
        raise ValueError(f"method must be auto, reduced or plain, not {method!r}")
    if method == "auto" and "system" not in net.reduced_cache and len(atoms.a) <= DENSE_MAX_ATOMS:
        if not net.reduced_cache.get("solved"):  # a network's first solve (one-off networks: the
            net.reduced_cache["solved"] = True  # control loop's tap moves) is not worth the dense
            method = "plain"  # reduction; the second one builds it
    try:
        if method != "plain":
            res = solve_reduced(net, atoms, tol_pu, max_iter, v0, anderson, s_inject_va)
            if res is not None:
                return res
            if method == "reduced":
                raise ValueError("method='reduced' needs the atoms of the network's build-time loads/DER")
        return solve_fixed_point(net, atoms, tol_pu, max_iter, v0, anderson, s_inject_va)
    except PowerFlowNotConverged as stalled:
        try:  # the fixed point does not contract here (e.g. wye DER on a 3-wire delta system)
            res = solve_newton(net, atoms, tol_pu, NEWTON_MAX_STEPS, None, s_inject_va)
        except PowerFlowNotConverged as failed:
            raise PowerFlowNotConverged(f"{stalled}; the Newton fallback failed too: {failed}",
                                        stalled.iterations + failed.iterations, failed.mismatch) from failed
        res.iterations += stalled.iterations
        return res
