"""Load and DER currents as functions of voltage (vectorized), with their Wirtinger derivatives.

Every load phase (wye: phase→neutral, delta: phase→next phase) becomes one or more *atoms*:
a current I(V) through the branch a→b with V = V_a − V_b (volts), per OpenDSS load models:

    PQ   (model 1):  I = conj(S)/conj(V)                       |V| in (Vmin, Vmax]·Vbase
    Z    (model 2):  I = Yeq·V,  Yeq = conj(S)/Vbase²
    I    (model 5):  I = conj(S)·|V| / (conj(V)·Vbase)
    CVR  (model 4):  I = P(|V|/Vb)^cw/conj(V) + (Q part: j·Im(Yeq)·V if cv = 2 else
                         −jQ(|V|/Vb)^cv/conj(V))
    MOTOR (model 3): I = P/conj(V) + j·Im(Yeq)·V
    GEN  (model 1 generator, S < 0):  I = conj(S)/conj(V)
ZIPV (model 8) is split into Z, I and PQ atoms. Outside the band, OpenDSS's fallbacks are kept:
below Vlow·Vb → Yeq·V; between Vlow and Vmin → linear interpolation of the current magnitude
(I = (I_low + M·(|V| − V_low))·V/|V|); above Vmax → Yeq/vmax²·V (Yeq/vmax for I atoms);
generators use Yeq/vmin² below Vmin and Yeq/vmax² above Vmax.

Each current is a sum of terms c·|V|^p·V^a·conj(V)^b, so dI = α dV + β conj(dV) with
α = Σ T·(a + p/2)/V, β = Σ T·(b + p/2)/conj(V); `derivatives` returns (α, β) per atom.
Injection into the network: −I at node a, +I at node b.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from market.network.errors import UnsupportedElementError
from market.network.model import Feeder, Generator, Load

PQ, Z, I, CVR, MOTOR, GEN = range(6)
SQRT3 = math.sqrt(3.0)


@dataclass
class Atoms:
    a: np.ndarray  # node index (−1 ground = appended zero)
    b: np.ndarray
    s_va: np.ndarray  # nominal complex power drawn (W + j var); generators negative
    vb: np.ndarray
    vlow: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    kind: np.ndarray
    cw: np.ndarray
    cv: np.ndarray
    owner: np.ndarray  # index into `owners`
    owners: list[str]
    incidence: sp.csr_matrix  # n × atoms: +1 at a, −1 at b
    p_share: np.ndarray  # s_va = (kW·p_share + j·kvar·q_share)·1000 (ZIP fractions / phases, sign)
    q_share: np.ndarray

    def __post_init__(self) -> None:
        """Static per-kind index arrays and absolute voltage limits (fast path of `currents`)."""
        self.groups = {k: np.nonzero(self.kind == k)[0] for k in (PQ, Z, I, CVR, MOTOR, GEN)}
        self.groups_pq = np.nonzero((self.kind == PQ) | (self.kind == GEN))[0]
        self.v95_abs = self.vmin * self.vb
        self.v105_abs = self.vmax * self.vb
        self.not_z = self.kind != Z
        self._shared: dict = {}  # lazily filled, shared by `scaled` copies (same static arrays)

    @property
    def fused(self) -> dict:
        """Constants of the reduced solver's fused load formula (computed once, on first use)."""
        fused = self._shared.get("fused")
        if fused is None:
            fused = self._shared["fused"] = _fused_constants(self)
        return fused

    def set_power(self, owner: str, kw: float, kvar: float) -> None:
        """New kW/kvar for one load ("load.name") or generator ("generator.name"), in place.

        No refactorization is needed: the factorized matrix keeps its build-time admittances."""
        try:
            k = self.owners.index(owner)
        except ValueError:
            raise KeyError(f"no load or generator named {owner!r}") from None
        sel = self.owner == k
        self.s_va[sel] = (kw * self.p_share[sel] + 1j * kvar * self.q_share[sel]) * 1000.0

    def scaled(self, factor: float) -> "Atoms":
        """A copy with every load (not generator) power multiplied by `factor`."""
        out = copy.copy(self)  # shares the static index arrays (no __post_init__ again)
        out.s_va = np.where(self.kind == GEN, self.s_va, self.s_va * factor)
        return out

    def injection(self, v_ext: np.ndarray) -> np.ndarray:
        """Node current injections (A) for node voltages `v_ext` (ground appended last)."""
        return -(self.incidence @ currents(self, v_ext[self.a] - v_ext[self.b]))


def _fused_constants(at: "Atoms") -> dict:
    """Per-atom constants of reduced.CompensatedCurrents' fused formula (independent of s_va).

    Current I = conj(S)·x·(FA/|x|² + FB + FC/|x|) with real factors per region (rows of the
    flattened 4×m tables: 0 below Vlow, 1 between Vlow and Vmin, 2 in band, 3 above Vmax), as
    `currents`/`_fallback`: band — PQ/generator FA = 1, Z FB = 1/Vb², I FC = 1/Vb; low — FB = 1/Vb²
    (Yeq); mid — I = (I_low + slope·(|x| − V_low))·x/|x| with I_low = Yeq·V_low; high — FB =
    1/(Vb²·vmax²) (1/(Vb²·vmax) for I); generators below Vmin — FB = 1/(Vb²·vmin²)."""
    kind = at.kind
    pq = (kind == PQ) | (kind == GEN)
    zk, ik, gen = kind == Z, kind == I, kind == GEN
    vl, v95 = at.vlow * at.vb, at.v95_abs
    inv_vb2 = 1.0 / at.vb ** 2
    i_low = inv_vb2 * vl
    with np.errstate(divide="ignore", invalid="ignore"):  # vmin = 0 (never below it): unused entries
        gen_b = inv_vb2 / at.vmin ** 2
        i95 = np.where(ik, inv_vb2 * at.vb, inv_vb2 / at.vmin ** 2 * v95)  # per unit of conj(S)
        slope = np.nan_to_num((i95 - i_low) / (v95 - vl))
    zero = np.zeros(len(kind))
    fa = np.concatenate((zero, zero, pq.astype(float), zero))
    fb = np.concatenate((np.where(gen, gen_b, inv_vb2), np.where(gen, gen_b, slope), np.where(zk, inv_vb2, 0.0),
                         np.where(ik, inv_vb2 / at.vmax, inv_vb2 / at.vmax ** 2)))
    fc = np.concatenate((zero, np.where(gen, 0.0, i_low - slope * vl), np.where(ik, 1.0 / at.vb, 0.0), zero))
    t0_v = np.where(zk, -1.0, np.minimum(vl, v95))
    lo_v, hi_v = np.where(zk, -1.0, v95), np.where(zk, np.inf, at.v105_abs)
    return {"generic": bool(np.any((kind == MOTOR) | (kind == CVR))),
            "t0_v": t0_v, "lo_v": lo_v, "hi_v": hi_v, "fa": fa, "fb": fb, "fc": fc,
            "lb": np.concatenate((np.full(len(kind), -1.0), t0_v, lo_v, hi_v)),  # region brackets (lb, ub]
            "ub": np.concatenate((t0_v, lo_v, hi_v, np.full(len(kind), np.inf))),
            "f_pq": pq.astype(float)}


def _vbase(phases: int, conn: str, kv: float) -> float:
    if conn == "wye" and phases in (2, 3):
        return kv * 1000.0 / SQRT3
    return kv * 1000.0


def _branches(phases: int, conn: str, nodes: tuple[int, ...]) -> list[tuple[int, int]]:
    if conn == "wye":
        return [(nodes[i], nodes[-1]) for i in range(phases)]
    nc = len(nodes)
    return [(nodes[i], nodes[(i + 1) % nc]) for i in range(phases)]


def _split(el: Load) -> list[tuple[int, float, float, float, float]]:
    """(kind, P share, Q share, cw, cv) atoms for one load: S_atom = (kW·p + j·kvar·q)·1000."""
    simple = {1: PQ, 2: Z, 3: MOTOR, 5: I}
    if el.model in simple:
        return [(simple[el.model], 1.0, 1.0, 1.0, 2.0)]
    if el.model == 4:
        return [(CVR, 1.0, 1.0, el.cvr_watts, el.cvr_vars)]
    if el.model == 8 and el.zipv is not None and len(el.zipv) >= 6 and (len(el.zipv) < 7 or el.zipv[6] <= 0):
        zp = el.zipv
        return [(Z, zp[0], zp[3], 1.0, 2.0), (I, zp[1], zp[4], 1.0, 2.0), (PQ, zp[2], zp[5], 1.0, 2.0)]
    raise UnsupportedElementError(f"load {el.name!r}: model {el.model} (or ZIPV cut-off) not supported",
                                  [f"load.{el.name}"])


def compile_atoms(feeder: Feeder, index: dict[tuple[str, int], int], n: int) -> Atoms:
    keys = ("a", "b", "s", "vb", "vlow", "vmin", "vmax", "kind", "cw", "cv", "own", "ps", "qs")
    rows: list[tuple] = []  # one row per atom, in the order of `keys`
    owners: list[str] = []

    def add(el: Load | Generator, parts, vlow: float) -> None:
        own = len(owners)
        owners.append(("load." if isinstance(el, Load) else el.dss_class + ".") + el.name)
        vb = _vbase(el.phases, el.conn, el.kv)
        branches = [(index[(el.bus, na)] if na else -1, index[(el.bus, nb)] if nb else -1)
                    for na, nb in _branches(el.phases, el.conn, el.nodes)]
        for kind, ps, qs, cw, cv in parts:
            ps, qs = ps / el.phases, qs / el.phases
            s_va = complex(el.kw * ps, el.kvar * qs) * 1000.0
            rows.extend((ia, ib, s_va, vb, vlow, el.vmin_pu, el.vmax_pu, kind, cw, cv, own, ps, qs)
                        for ia, ib in branches)

    for ld in feeder.loads:
        add(ld, _split(ld), ld.vlow_pu)
    for g in feeder.generators:
        add(g, [(GEN, -1.0, -1.0, 1.0, 2.0)], 0.0)
    cols = dict(zip(keys, zip(*rows))) if rows else {k: () for k in keys}
    a = np.array(cols["a"], dtype=np.int64)
    b = np.array(cols["b"], dtype=np.int64)
    m = len(a)
    r = np.concatenate([a, b])
    c = np.concatenate([np.arange(m), np.arange(m)])
    v = np.concatenate([np.ones(m), -np.ones(m)])
    keep = r >= 0
    inc = sp.coo_matrix((v[keep], (r[keep], c[keep])), shape=(n, m)).tocsr()
    f = lambda k: np.array(cols[k], dtype=float)  # noqa: E731
    return Atoms(a, b, np.array(cols["s"], dtype=complex), f("vb"), f("vlow"), f("vmin"), f("vmax"),
                 np.array(cols["kind"], dtype=np.int64), f("cw"), f("cv"), np.array(cols["own"], dtype=np.int64),
                 owners, inc, f("ps"), f("qs"))


def _regions(at: Atoms, m: np.ndarray):
    vl = at.vlow * at.vb
    v95 = at.vmin * at.vb
    v105 = at.vmax * at.vb
    gen = at.kind == GEN
    zk = at.kind == Z
    low = (m <= vl) & ~gen & ~zk
    mid = (m > vl) & (m <= v95) & ~gen & ~zk
    high = (m > v105) & ~zk
    gen_low = gen & (m <= v95)
    normal = ~(low | mid | high | gen_low)
    return vl, v95, low, mid, high, gen_low, normal


def _interp_coeffs(at: Atoms, yeq: np.ndarray, vl, v95):
    """I_low and slope M of the magnitude interpolation between Vlow and Vmin (per atom)."""
    i_low = yeq * vl
    with np.errstate(divide="ignore", invalid="ignore"):
        i95 = np.where(at.kind == I, yeq * at.vb, yeq / at.vmin ** 2 * v95)
        slope = (i95 - i_low) / (v95 - vl)
    return i_low, np.nan_to_num(slope)


def _z_fallback(at: Atoms, yeq: np.ndarray) -> np.ndarray:
    """Admittance used above Vmax (and below Vmin for generators)."""
    return np.where(at.kind == I, yeq / at.vmax, yeq / at.vmax ** 2)


def currents(at: Atoms, v: np.ndarray) -> np.ndarray:
    """Branch current (A, a→b) of every atom for branch voltages `v` (V)."""
    m = np.abs(v)
    cv = np.conj(v)
    cs = np.conj(at.s_va)
    out = np.empty_like(v)
    g = at.groups
    idx = at.groups_pq
    out[idx] = cs[idx] / cv[idx]
    idx = g[Z]
    out[idx] = cs[idx] / at.vb[idx] ** 2 * v[idx]
    idx = g[I]
    out[idx] = cs[idx] * m[idx] / (cv[idx] * at.vb[idx])
    idx = g[MOTOR]
    if idx.size:
        out[idx] = at.s_va[idx].real / cv[idx] - 1j * at.s_va[idx].imag / at.vb[idx] ** 2 * v[idx]
    idx = g[CVR]
    if idx.size:
        out[idx] = _cvr_at(at, idx, v[idx], m[idx])
    outside = ((m <= at.v95_abs) | (m > at.v105_abs)) & at.not_z
    if outside.any():
        idx = np.nonzero(outside)[0]
        out[idx] = _fallback(at, idx, v[idx], m[idx])
    return out


def _cvr_at(at: Atoms, idx: np.ndarray, v: np.ndarray, m: np.ndarray) -> np.ndarray:
    s, vb = at.s_va[idx], at.vb[idx]
    ratio = m / vb
    cw, cvv = at.cw[idx], at.cv[idx]
    p = s.real * np.where(cw == 1.0, ratio, ratio ** cw) / np.conj(v)
    q_z = -1j * s.imag / vb ** 2 * v
    q_p = -1j * s.imag * ratio ** cvv / np.conj(v)
    return p + np.where(cvv == 2.0, q_z, q_p)


def _fallback(at: Atoms, idx: np.ndarray, v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Currents of atoms outside their constant-power band (OpenDSS's impedance fallbacks)."""
    kind = at.kind[idx]
    yeq = np.conj(at.s_va[idx]) / at.vb[idx] ** 2
    vl = at.vlow[idx] * at.vb[idx]
    v95 = at.v95_abs[idx]
    vmin, vmax = at.vmin[idx], at.vmax[idx]
    gen = kind == GEN
    res = np.empty_like(v)
    high = m > at.v105_abs[idx]
    res[high] = np.where(kind[high] == I, yeq[high] / vmax[high], yeq[high] / vmax[high] ** 2) * v[high]
    gl = gen & ~high
    res[gl] = yeq[gl] / vmin[gl] ** 2 * v[gl]
    low = ~gen & ~high & (m <= vl)
    res[low] = yeq[low] * v[low]
    mid = ~gen & ~high & (m > vl)
    if mid.any():
        i_low = yeq[mid] * vl[mid]
        i95 = np.where(kind[mid] == I, yeq[mid] * at.vb[idx][mid], yeq[mid] / vmin[mid] ** 2 * v95[mid])
        slope = (i95 - i_low) / (v95[mid] - vl[mid])
        res[mid] = (i_low + slope * (m[mid] - vl[mid])) * v[mid] / m[mid]
    return res


def derivatives(at: Atoms, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) per atom: dI = α·dV + β·conj(dV) at branch voltages `v`."""
    m = np.abs(v)
    yeq = np.conj(at.s_va) / at.vb ** 2
    vl, v95, low, mid, high, gen_low, normal = _regions(at, m)
    alpha = np.zeros_like(v)
    beta = np.zeros_like(v)
    alpha[low] = yeq[low]
    if mid.any():
        i_low, slope = _interp_coeffs(at, yeq, vl, v95)
        t = (i_low[mid] - slope[mid] * vl[mid]) * v[mid] / m[mid]  # c·|V|^-1·V
        alpha[mid] = slope[mid] + 0.5 * t / v[mid]
        beta[mid] = -0.5 * t / np.conj(v[mid])
    alpha[high] = _z_fallback(at, yeq)[high]
    alpha[gen_low] = yeq[gen_low] / at.vmin[gen_low] ** 2
    k = at.kind[normal]
    vn, mn, s, vb = v[normal], m[normal], at.s_va[normal], at.vb[normal]
    al = np.zeros_like(vn)
    be = np.zeros_like(vn)
    pq = (k == PQ) | (k == GEN)
    be[pq] = -np.conj(s[pq]) / np.conj(vn[pq]) ** 2
    zz = k == Z
    al[zz] = yeq[normal][zz]
    ii = k == I
    t = np.conj(s[ii]) * mn[ii] / (np.conj(vn[ii]) * vb[ii])
    al[ii] = 0.5 * t / vn[ii]
    be[ii] = -0.5 * t / np.conj(vn[ii])
    mo = k == MOTOR
    be[mo] = -s[mo].real / np.conj(vn[mo]) ** 2
    al[mo] = 1j * yeq[normal][mo].imag
    cv = k == CVR
    if cv.any():
        ratio = mn[cv] / vb[cv]
        cw, cvv = at.cw[normal][cv], at.cv[normal][cv]
        tp = s[cv].real * ratio ** cw / np.conj(vn[cv])
        a_c = tp * (cw / 2) / vn[cv]
        b_c = tp * (cw / 2 - 1) / np.conj(vn[cv])
        tq = -1j * s[cv].imag * ratio ** cvv / np.conj(vn[cv])
        a_c = a_c + np.where(cvv == 2.0, 1j * yeq[normal][cv].imag, tq * (cvv / 2) / vn[cv])
        b_c = b_c + np.where(cvv == 2.0, 0.0, tq * (cvv / 2 - 1) / np.conj(vn[cv]))
        al[cv], be[cv] = a_c, b_c
    alpha[normal], beta[normal] = al, be
    return alpha, beta
