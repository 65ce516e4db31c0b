"""Linear sensitivities around a solved power flow, for market clearing (no finite differences).

At a solution V the network equations are F(V) = Y V + C·I_atoms(Cᵀ V) − I_src − I_new = 0 with
load/DER atoms linearised as dI = α dV + β conj(dV) (injections.derivatives). A new
constant-power injection P + jQ (W, var) at node k adds I_new,k = conj((P + jQ)/V_k), so

    A dV + B conj(dV) = dI_new,   A = Y + C diag(α) Cᵀ,   B = C diag(β) Cᵀ,
    dI_new/dP_k = 1/conj(V_k),    dI_new/dQ_k = −j/conj(V_k).

Written in real form M [dRe V; dIm V] = [Re dI; Im dI], M is factorized once per operating
point (SuperLU) and reused for every injection and every output row. Outputs are linear
functionals g·[dRe V; dIm V]:
- |V_i| (pu):  (Re V_i dRe_i + Im V_i dIm_i)/(|V_i|·Vbase_i)
- P at an element conductor c (sending end), I_c = Σ_k Yp[c,k] V_k:
      dP = Re(dV_c conj(I_c)) + Re(conj(V_c) Σ_k Yp[c,k] dV_k)
- total losses: the sum of dP over every conductor of every line, transformer and capacitor
  (shunt reactors excluded, as in OpenDSS's Losses).
When there are fewer outputs than injections the adjoint (Mᵀ λ = gᵀ) is used instead.
Units: PTDF in kW/kW, dV/dP in pu/kW, dV/dQ in pu/kvar, loss factors in kW/kW.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from market.network.injections import derivatives
from market.network.locations import branch_id, node_location
from market.network.solver import PowerFlowResult

Key = tuple[str, int]


@dataclass
class Sensitivities:
    """All arrays are indexed by the explicit lists next to them (rows × injection columns)."""
    injections: list[Key]  # (bus, node) of each column
    lines: list[Key]  # ("line.name" | "transformer.name", node) of each PTDF row
    voltages: list[Key]  # (bus, node) of each voltage row
    ptdf: np.ndarray  # dP_line_kW / dP_inj_kW      (len(lines) × len(injections))
    ptdf_q: np.ndarray  # dP_line_kW / dQ_inj_kvar
    dv_dp: np.ndarray  # d|V| pu / dP_inj_kW          (len(voltages) × len(injections))
    dv_dq: np.ndarray  # d|V| pu / dQ_inj_kvar
    loss_factor_p: np.ndarray  # dLosses_kW / dP_inj_kW  (len(injections),)
    loss_factor_q: np.ndarray  # dLosses_kW / dQ_inj_kvar
    line_p_kw: np.ndarray  # base-point flows of the PTDF rows (kW)
    v_pu: np.ndarray  # base-point |V| of the voltage rows (pu)
    losses_kw: float

    @property
    def injection_locations(self) -> list[str]:
        """Location ids of the columns ("675.1")."""
        return [node_location(k) for k in self.injections]

    @property
    def voltage_locations(self) -> list[str]:
        return [node_location(k) for k in self.voltages]

    @property
    def line_ids(self) -> list[str]:
        """Branch ids of the PTDF rows ("line.650632.1")."""
        return [branch_id(e, k) for e, k in self.lines]


class SensitivityModel:
    """Linearisation of one solved state; factorizes M once, answers any rows/columns."""

    def __init__(self, res: PowerFlowResult):
        self.res = res
        net = res.network
        n = net.n
        at = res.atoms
        v_ext = res.v_ext()
        alpha, beta = derivatives(at, v_ext[at.a] - v_ext[at.b])
        c = at.incidence
        a = (net.y + c @ sp.diags(alpha) @ c.T).tocsr()
        b = c @ sp.diags(beta) @ c.T
        if res.s_inject_va is not None:  # extra injections conj(S/V): dI = −conj(S)/conj(V)² conj(dV)
            b = b + sp.diags(np.conj(res.s_inject_va) / np.conj(res.v) ** 2)
        b = b.tocsr()
        self.m = sp.bmat([[a.real + b.real, -a.imag + b.imag], [a.imag + b.imag, a.real - b.real]]).tocsc()
        self.lu = splu(self.m)
        self.n = n
        self._rows = self._row_lookup()

    def _row_lookup(self) -> dict[Key, int]:
        out: dict[Key, int] = {}
        r0 = 0
        for blk in self.res.network.blocks:
            if blk.kind in ("line", "transformer"):
                for j in range(blk.n_terminal1):
                    if blk.conductors[j][1] != 0:
                        out.setdefault((blk.element, blk.conductors[j][1]), r0 + j)
            r0 += len(blk.index)
        return out

    def all_lines(self) -> list[Key]:
        return list(self._rows)

    def all_nodes(self) -> list[Key]:
        return list(self.res.network.nodes)

    # --- right-hand sides and output functionals -------------------------------------------
    def _rhs(self, injections: list[Key]) -> tuple[np.ndarray, np.ndarray]:
        net = self.res.network
        idx = np.array([net.index[k] for k in injections], dtype=np.int64)
        inv = 1000.0 / np.conj(self.res.v[idx])  # per kW
        rp = np.zeros((2 * self.n, len(idx)))
        rq = np.zeros((2 * self.n, len(idx)))
        cols = np.arange(len(idx))
        rp[idx, cols], rp[self.n + idx, cols] = inv.real, inv.imag
        iq = -1j * inv
        rq[idx, cols], rq[self.n + idx, cols] = iq.real, iq.imag
        return rp, rq

    def _flow_gradients(self, rows: np.ndarray) -> sp.csr_matrix:
        """Gradient (kW per unit of [dRe; dIm] volts) of P at stacked conductor rows."""
        net = self.res.network
        ty = net.term_y[rows]
        nodes = net.term_rows[rows]
        v_c = np.where(nodes >= 0, self.res.v[np.maximum(nodes, 0)], 0.0)
        i_c = ty @ self.res.v
        a = sp.diags(np.conj(v_c)) @ ty
        grad = sp.hstack([a.real, -a.imag]).tolil()
        for r, (k, cur) in enumerate(zip(nodes, i_c)):
            if k >= 0:
                grad[r, k] += cur.real
                grad[r, self.n + k] += cur.imag
        return (grad.tocsr() / 1000.0)

    def _loss_gradient(self) -> np.ndarray:
        net = self.res.network
        nodes = net.term_rows
        ok = (nodes >= 0) & net.loss_mask  # shunt reactors are not losses (OpenDSS Losses)
        v_c = np.where(ok, self.res.v[np.maximum(nodes, 0)], 0.0)
        a = net.term_y.T @ np.conj(v_c)  # Σ_r conj(V_c(r)) Yp[r, :]
        i_r = net.term_y @ self.res.v
        node_i = np.bincount(nodes[ok], weights=i_r[ok].real, minlength=self.n) + \
            1j * np.bincount(nodes[ok], weights=i_r[ok].imag, minlength=self.n)
        return np.concatenate([a.real + node_i.real, -a.imag + node_i.imag]) / 1000.0

    def _voltage_gradients(self, voltages: list[Key]) -> sp.csr_matrix:
        net = self.res.network
        idx = np.array([net.index[k] for k in voltages], dtype=np.int64)
        v = self.res.v[idx]
        scale = 1.0 / (np.abs(v) * net.vbase_v[idx])
        r = np.arange(len(idx))
        data = np.concatenate([v.real * scale, v.imag * scale])
        return sp.csr_matrix((data, (np.concatenate([r, r]), np.concatenate([idx, self.n + idx]))),
                             shape=(len(idx), 2 * self.n))

    def _apply(self, g: sp.csr_matrix, rp: np.ndarray, rq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(g M⁻¹ rp, g M⁻¹ rq), choosing direct or adjoint solves by size."""
        if g.shape[0] == 0:
            return np.zeros((0, rp.shape[1])), np.zeros((0, rp.shape[1]))
        if g.shape[0] < 2 * rp.shape[1]:
            lam = self.lu.solve(np.asarray(g.toarray().T), trans="T")
            return lam.T @ rp, lam.T @ rq
        return g @ self.lu.solve(rp), g @ self.lu.solve(rq)

    def compute(self, injections: list[Key] | None = None, lines: list[Key] | None = None,
                voltages: list[Key] | None = None) -> Sensitivities:
        injections = self.all_nodes() if injections is None else list(injections)
        lines = self.all_lines() if lines is None else list(lines)
        voltages = self.all_nodes() if voltages is None else list(voltages)
        rp, rq = self._rhs(injections)
        rows = np.array([self._rows[k] for k in lines], dtype=np.int64)
        g_flow = self._flow_gradients(rows)
        g_v = self._voltage_gradients(voltages)
        g_loss = sp.csr_matrix(self._loss_gradient()[None, :])
        g_all = sp.vstack([g_flow, g_v, g_loss]).tocsr()
        sp_, sq_ = self._apply(g_all, rp, rq)
        nl, nv = len(lines), len(voltages)
        powers = self.res.element_powers_va()
        net = self.res.network
        vidx = [net.index[k] for k in voltages]
        return Sensitivities(injections, lines, voltages, sp_[:nl], sq_[:nl], sp_[nl:nl + nv], sq_[nl:nl + nv],
                             sp_[-1], sq_[-1], powers[rows].real / 1000.0, self.res.v_pu[vidx],
                             self.res.losses_va().real / 1000.0)


def sensitivities(res: PowerFlowResult, injections: list[Key] | None = None, lines: list[Key] | None = None,
                  voltages: list[Key] | None = None) -> Sensitivities:
    """One-shot helper: linearise `res` and compute the requested rows/columns (default: all)."""
    return SensitivityModel(res).compute(injections, lines, voltages)
