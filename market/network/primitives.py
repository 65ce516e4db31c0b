"""Primitive admittance matrices (Yprim) of network elements, the way OpenDSS forms them.

Each function returns `(conductors, yprim)`: `conductors` lists (bus, node) per row/column of
`yprim` (complex, siemens), terminal after terminal. Node 0 is ground and is dropped when the
Ybus is assembled. Loads and generators have no Yprim here: their (nonlinear) currents are
injections iterated by the solver.

Transformer (OpenDSS `TTransfObj.CalcY_Terminal`): per phase, a one-volt model
    ZB[i,i] = (R1 + R(i+1) + j X1,(i+1)) · Zb,     Zb = 1 / (VA_1 / phases)
    ZB[i,j] = (ZB[i,i] + ZB[j,j] − (R(i+1) + R(j+1) + j X(i+1),(j+1)) · Zb) / 2
    Y_1V    = Aᵀ ZB⁻¹ A,  A = [−1 | I]
then terminal (two ends per coil) Y_T = N Y_1V Nᵀ with N[2i,i] = 1/(Vbase_i·tap_i) = −N[2i+1,i];
magnetising/no-load admittance on winding 2; 1-ppm anti-float susceptance on every coil end;
coils mapped to phase/neutral conductors per wye/delta connection.
"""
from __future__ import annotations

import math

import numpy as np

from market.network.model import Capacitor, Feeder, Line, Source, Transformer

SQRT3 = math.sqrt(3.0)


def line_yprim(line: Line) -> tuple[list[tuple[str, int]], np.ndarray]:
    """[[Ys + Ysh/2, −Ys], [−Ys, Ys + Ysh/2]] with Ys = Z⁻¹ (ohms → siemens)."""
    ys = np.linalg.inv(np.asarray(line.z_ohm, dtype=complex))
    n = ys.shape[0]
    y = np.empty((2 * n, 2 * n), complex)
    y[:n, :n] = ys
    y[n:, n:] = ys
    y[:n, n:] = -ys
    y[n:, :n] = -ys
    if line.y_shunt_s is not None:
        half = 0.5 * np.asarray(line.y_shunt_s, complex)
        y[:n, :n] += half
        y[n:, n:] += half
    conds = [(line.bus1, k) for k in line.nodes1] + [(line.bus2, k) for k in line.nodes2]
    return conds, y


def line_yprims(lines: list[Line]) -> list[tuple[list[tuple[str, int]], np.ndarray]]:
    """line_yprim for many lines at once: one batched inverse and shunt sum per conductor count
    (same maths)."""
    out: list = [None] * len(lines)
    groups: dict[int, list[int]] = {}
    for i, line in enumerate(lines):
        groups.setdefault(len(line.nodes1), []).append(i)
    for n, members in groups.items():
        z = np.array([lines[i].z_ohm for i in members], dtype=complex).reshape(len(members), n, n)
        ys = np.linalg.inv(z)
        y = np.empty((len(members), 2 * n, 2 * n), complex)
        y[:, :n, :n] = ys
        y[:, n:, n:] = ys
        y[:, :n, n:] = -ys
        y[:, n:, :n] = -ys
        with_shunt = [j for j, i in enumerate(members) if lines[i].y_shunt_s is not None]
        if with_shunt:
            half = 0.5 * np.array([lines[members[j]].y_shunt_s for j in with_shunt], dtype=complex).reshape(-1, n, n)
            y[with_shunt, :n, :n] += half
            y[with_shunt, n:, n:] += half
        for j, i in enumerate(members):
            line = lines[i]
            b1, b2 = line.bus1, line.bus2
            out[i] = ([(b1, k) for k in line.nodes1] + [(b2, k) for k in line.nodes2], y[j])
    return out


def _transformer_key(tr: Transformer) -> tuple:
    """Everything transformer_yprim's matrix depends on (not the buses): equal keys, equal Yprims."""
    return (tr.phases, tr.ppm_antifloat, tr.pct_noload_loss, tr.pct_imag, tuple(tr.xsc_pct),
            tuple((w.conn, w.kv, w.kva, w.r_pct, w.tap_pu, w.rneut_ohm, w.xneut_ohm, len(w.nodes))
                  for w in tr.windings))


def transformer_yprims(transformers: list[Transformer]) -> list[tuple[list[tuple[str, int]], np.ndarray]]:
    """transformer_yprim for many transformers, computing each distinct electrical type once
    (a feeder's service transformers are mostly identical); the matrices are shared read-only."""
    cache: dict[tuple, np.ndarray] = {}
    out = []
    for tr in transformers:
        key = _transformer_key(tr)
        y = cache.get(key)
        if y is None:
            y = transformer_yprim(tr)[1]
            y.flags.writeable = False
            cache[key] = y
        out.append(([(w.bus, k) for w in tr.windings for k in w.nodes], y))
    return out


def source_yprim(src: Source) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Thevenin admittance Z⁻¹ at the source bus (the EMF side is ground)."""
    y = np.linalg.inv(np.asarray(src.z_ohm, dtype=complex))
    return [(src.bus, k) for k in src.nodes], y


def source_emf_v(src: Source) -> np.ndarray:
    """Line-to-neutral EMF phasors (volts): pu·kV/√3 at angle, angle−120°, angle+120°."""
    mag = src.pu * src.kv_ll * 1000.0 / SQRT3
    n = len(src.nodes)
    ang = np.deg2rad(src.angle_deg - 120.0 * np.arange(n))
    return mag * np.exp(1j * ang)


def source_norton_a(src: Source) -> np.ndarray:
    """Norton current injection (A) at the source nodes: Z⁻¹ · EMF."""
    return np.linalg.inv(np.asarray(src.z_ohm, dtype=complex)) @ source_emf_v(src)


def capacitor_yprim(cap: Capacitor, freq_hz: float) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Closed steps in parallel; C = Q / (ω kV²) per wye phase, Q / (3 ω kV²) per delta branch."""
    kvar = sum(k for k, s in zip(cap.kvar_steps, cap.states) if s)
    n = len(cap.nodes)
    v2 = (cap.kv * 1000.0) ** 2  # B = ωC with C = Q/(ω·kV²): frequency cancels at base frequency
    if cap.conn == "delta":
        per = kvar * 1000.0 / v2 / (3.0 if n >= 3 else 1.0)
        b = 1j * per
        y = np.zeros((n, n), complex)
        branches = [(i, (i + 1) % n) for i in range(n)] if n >= 3 else [(0, 1)]
        for i, j in branches:
            y[i, i] += b
            y[j, j] += b
            y[i, j] -= b
            y[j, i] -= b
        return [(cap.bus, k) for k in cap.nodes], y
    b = 1j * kvar * 1000.0 / v2 * np.eye(n)
    y = np.block([[b, -b], [-b, b]])
    bus2 = cap.bus2 or cap.bus
    nodes2 = cap.nodes2 if cap.nodes2 is not None else (0,) * n
    return [(cap.bus, k) for k in cap.nodes] + [(bus2, k) for k in nodes2], y


def _winding_vbase(tr: Transformer, i: int) -> float:
    w = tr.windings[i]
    if w.conn == "wye" and tr.phases in (2, 3):
        return w.kv * 1000.0 / SQRT3
    return w.kv * 1000.0


def _coil_terminal_matrix(tr: Transformer) -> np.ndarray:
    """Y_T (2·nw × 2·nw), one phase, siemens, including no-load and anti-float terms."""
    nw = len(tr.windings)
    va1 = tr.windings[0].kva * 1000.0
    zb = 1.0 / (va1 / tr.phases)
    rpu = [w.r_pct / 100.0 for w in tr.windings]
    xsc = [x / 100.0 for x in tr.xsc_pct]
    zmat = np.zeros((nw - 1, nw - 1), complex)
    for i in range(nw - 1):
        zmat[i, i] = complex(rpu[0] + rpu[i + 1], xsc[i]) * zb
    k = nw - 1
    for i in range(nw - 1):
        for j in range(i + 1, nw - 1):
            zij = complex(rpu[i + 1] + rpu[j + 1], xsc[k]) * zb
            zmat[i, j] = zmat[j, i] = 0.5 * (zmat[i, i] + zmat[j, j] - zij)
            k += 1
    a = np.hstack([-np.ones((nw - 1, 1)), np.eye(nw - 1)])
    y1 = a.T @ np.linalg.inv(zmat) @ a
    y1[1, 1] += complex(tr.pct_noload_loss / 100.0 / zb, -tr.pct_imag / 100.0 / zb)
    nmat = np.zeros((2 * nw, nw))
    for i, w in enumerate(tr.windings):
        s = 1.0 / (_winding_vbase(tr, i) * w.tap_pu)
        nmat[2 * i, i] = s
        nmat[2 * i + 1, i] = -s
    yt = nmat @ y1 @ nmat.T
    for i in range(nw):
        y_ppm = -tr.ppm_antifloat * 1e-6 / (_winding_vbase(tr, i) ** 2 / (va1 / tr.phases)) / 2.0
        yt[2 * i, 2 * i] += 1j * y_ppm
        yt[2 * i + 1, 2 * i + 1] += 1j * y_ppm
    return yt


def _term_ref(tr: Transformer) -> list[int]:
    """Conductor index (0-based, winding-major) of each coil end, phase after phase."""
    nc = tr.phases + 1
    refs: list[int] = []
    # OpenDSS (lag, the default): delta coils run i -> i-1 when winding 1 is delta, i -> i+1 otherwise
    step = -1 if tr.windings[0].conn == "delta" else 1
    if tr.phases == 1:
        for j in range(len(tr.windings)):
            refs += [j * nc, j * nc + nc - 1]
        return refs
    for i in range(tr.phases):
        for j, w in enumerate(tr.windings):
            if w.conn == "wye":
                refs += [j * nc + i, j * nc + nc - 1]
            else:
                nxt = i + step  # OpenDSS RotatePhases
                if tr.phases > 2:
                    nxt %= tr.phases
                elif nxt < 0:
                    nxt = 2
                refs += [j * nc + i, j * nc + nxt]
    return refs


def transformer_yprim(tr: Transformer) -> tuple[list[tuple[str, int]], np.ndarray]:
    nw = len(tr.windings)
    nc = tr.phases + 1
    yt = _coil_terminal_matrix(tr)
    refs = np.asarray(_term_ref(tr))
    y = np.zeros((nw * nc, nw * nc), complex)
    nw2 = 2 * nw
    for k in range(tr.phases):
        r = refs[k * nw2:(k + 1) * nw2]
        y[np.ix_(r, r)] += yt
    for j, w in enumerate(tr.windings):
        if w.conn != "wye":
            continue
        jj = j * nc + nc - 1
        if w.rneut_ohm >= 0:
            if w.rneut_ohm == 0 and w.xneut_ohm == 0:
                y[jj, jj] += 1e6
            else:
                y[jj, jj] += 1.0 / complex(w.rneut_ohm, w.xneut_ohm)
        else:
            y_ppm = -tr.ppm_antifloat * 1e-6 / (_winding_vbase(tr, j) ** 2 / (tr.windings[0].kva * 1000.0 / tr.phases)) / 2.0
            y[jj, jj] += 1j * y_ppm
    conds = [(w.bus, k) for w in tr.windings for k in w.nodes]
    return conds, y


def all_branch_elements(feeder: Feeder):
    """Yield (kind, element) for every element that enters the Ybus, in a fixed order."""
    for line in feeder.lines:
        yield "line", line
    for tr in feeder.transformers:
        yield "transformer", tr
    for cap in feeder.capacitors:
        yield "capacitor", cap
    for sh in feeder.shunts:
        yield "shunt", sh


def element_primitive(kind: str, el, freq_hz: float) -> tuple[list[tuple[str, int]], np.ndarray]:
    if kind == "line":
        return line_yprim(el)
    if kind == "transformer":
        return transformer_yprim(el)
    if kind == "shunt":
        return [(el.bus, k) for k in el.nodes], np.array(el.y_s, dtype=complex)
    return capacitor_yprim(el, freq_hz)


def all_branch_primitives(feeder: Feeder):
    """Yield (kind, element, conductors, yprim) for every element that enters the Ybus."""
    for kind, el in all_branch_elements(feeder):
        yield (kind, el, *element_primitive(kind, el, feeder.base_frequency_hz))
