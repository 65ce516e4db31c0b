"""The linearised network the market clears on, one operating point per interval.

For interval t the feeder's own loads are scaled by the load shape s_t, the AC power flow is solved
(no market injections) and linearised around that state (`FeederNetwork.sensitivities`). With p the
net injection per location (kW, generation positive: market schedule − fixed load) and p⁰ its value
at the linearisation point (−base load):

    substation import   P_sub = P⁰_sub − Σ_l (1 − LF_l)(p_l − p⁰_l)        (LF = ∂losses/∂p, kW/kW)
    line·phase flow     F_k   = F⁰_k + Σ_l PTDF_kl (p_l − p⁰_l),   |F_k| ≤ F^max_k
    bus·phase voltage   V_v   = V⁰_v + Σ_l dV/dP_vl (p_l − p⁰_l),  V^min_v ≤ V_v ≤ V^max_v

The substation (the source bus) is the reference: the loss/energy split of the prices depends on it.
F^max_k = √((|V⁰|·I_norm/1000)² − Q⁰_k²): the normal ampere rating at the base-point voltage, with
the row's reactive flow held at its base value. Rows are computed for every rated line·phase and
every checked bus·phase (the candidates); the clearing uses only those in its critical set.
Not modelled yet: reactive injections (dV/dQ), voltage dependence of the ZIP loads in P_sub.
A delta or whole-bus load is booked equally on its phase nodes (for reporting; the physics is in
the base point).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from market.network import FeederNetwork
from market.network.locations import as_branch_key
from market.network.sensitivity import SensitivityModel

# HiGHS drops matrix entries below 1e-9 (its `small_matrix_value`); entries of the PTDF and dV/dP
# rows that small (≤ 1e-6 pu or kW per MW) are zeroed here, so the prices are computed from the very
# model the solver solved.
SMALL_COEF = 1e-9


@dataclass
class IntervalNetwork:
    """Linearisation of one interval. Columns: `locations`; rows: `line_ids`, `voltage_locations`."""
    locations: list[str]
    fixed_load_kw: np.ndarray          # D_l, fixed demand per location (the feeder's loads × shape)
    base_injection_kw: np.ndarray      # p⁰_l (= −D_l at the base point)
    substation_p_kw: float             # P⁰_sub, import at the base point
    loss_factor: np.ndarray            # LF_l, kW/kW
    line_ids: list[str]
    ptdf: np.ndarray                   # (lines × locations) kW/kW
    base_flow_kw: np.ndarray
    flow_max_kw: np.ndarray
    voltage_locations: list[str]
    dv_dp: np.ndarray                  # (voltages × locations) pu/kW
    base_v_pu: np.ndarray
    v_min_pu: np.ndarray
    v_max_pu: np.ndarray
    candidate_lines: list[str] | None = None      # every rated line·phase (None: `line_ids`)
    candidate_voltages: list[str] | None = None   # every checked bus·phase (None: `voltage_locations`)
    # reactive sensitivities (market.lem.reactive; None: Q not modelled): per kvar injected, q⁰ = 0
    ptdf_q: np.ndarray | None = None              # (lines × locations) kW/kvar
    dv_dq: np.ndarray | None = None               # (voltages × locations) pu/kvar
    loss_factor_q: np.ndarray | None = None       # kW/kvar

    def column(self, location: str) -> int:
        return self.locations.index(location)


@dataclass
class CriticalSet:
    """Line·phase rows (branch ids) and bus·phase voltage rows (location ids) in the clearing.
    The iteration with the AC power flow only ever adds to it."""
    lines: list[str] = field(default_factory=list)
    voltages: list[str] = field(default_factory=list)


@dataclass
class NetworkData:
    substation: str                    # the source bus (reference, ISO interface)
    intervals: list[IntervalNetwork]
    nodes_of: dict[str, list[str]]     # whole-bus id → its phase-node location ids

    def split(self, location: str) -> list[tuple[str, float]]:
        """[(node location, share)] of a resource at `location` (a whole bus: equal shares)."""
        if location in self.nodes_of:
            nodes = self.nodes_of[location]
            return [(n, 1.0 / len(nodes)) for n in nodes]
        if location not in self.intervals[0].locations:
            raise KeyError(f"location {location!r} is not a node of the feeder")
        return [(location, 1.0)]

    def all_rows(self) -> CriticalSet:
        """Every candidate row (no critical set: every limit in the model)."""
        t0 = self.intervals[0]
        return CriticalSet(list(t0.line_ids if t0.candidate_lines is None else t0.candidate_lines),
                           list(t0.voltage_locations if t0.candidate_voltages is None else t0.candidate_voltages))

    def without_losses(self) -> "NetworkData":
        """The same network with loss factors zero (a lossless linear model)."""
        return replace(self, intervals=[replace(iv, loss_factor=np.zeros_like(iv.loss_factor), loss_factor_q=None
                                                if iv.loss_factor_q is None else np.zeros_like(iv.loss_factor_q))
                                        for iv in self.intervals])

    def with_extra_load(self, location: str, kw: float) -> "NetworkData":
        """The same network with `kw` more fixed load at a node location in every interval."""
        out = []
        for iv in self.intervals:
            d = iv.fixed_load_kw.copy()
            d[iv.column(location)] += kw
            out.append(replace(iv, fixed_load_kw=d))
        return replace(self, intervals=out)


def _node_shares(load) -> list[tuple[int, float]]:
    phase_nodes = [n for n in load.nodes if 1 <= n <= 3]
    return [(n, 1.0 / len(phase_nodes)) for n in phase_nodes]


def _sending_buses(feeder) -> dict[str, str]:
    """{element ("line.650632", "transformer.sub"): its terminal-1 bus}, built once per feeder."""
    cache = getattr(feeder, "_lem_sending_buses", None)
    if cache is None:
        cache = {f"{getattr(ln, 'dss_class', 'line')}.{ln.name}".lower(): ln.bus1 for ln in feeder.lines}
        cache.update({f"transformer.{tr.name}".lower(): tr.windings[0].bus for tr in feeder.transformers})
        feeder._lem_sending_buses = cache
    return cache


def candidate_rows(snap, source: str) -> tuple[list[int], list[int]]:
    """(rated branch rows, checked bus·phase rows off the source bus) of a snapshot: the rows a
    critical set may hold."""
    rated = [i for i in range(len(snap.branch_ids)) if snap.norm_amps[i] > 0]
    checked = [i for i, c in enumerate(snap.v_checked) if c and not snap.locations[i].startswith(source + ".")]
    return rated, checked


def interval_network(res, snap, locations: list[str], nodes_of: dict[str, list[str]],
                     fixed_load_kw: np.ndarray, injection_kw: np.ndarray | None = None,
                     rating_margin: float = 0.0, voltage_margin_pu: float = 0.0,
                     lines: list[str] | None = None, voltages: list[str] | None = None) -> IntervalNetwork:
    """Linearise the solved state `res` (a market.network PowerFlowResult; `snap` its snapshot): fixed
    load D, market injections `injection_kw` (None: none), so p⁰ = injection − D. The flow limits
    are the normal rating × (1 − `rating_margin`) at the base-point voltage, the voltage limits
    [V^min + margin, V^max − margin] (margins absorb the linearisation error). Rows: the branch
    ids `lines` and bus·phase ids `voltages` (None: every candidate); `candidate_*` lists them all."""
    net = res.network
    source = net.feeder.source.bus.lower()
    col = {loc: i for i, loc in enumerate(locations)}
    d = np.asarray(fixed_load_kw, float)
    p0 = -d if injection_kw is None else np.asarray(injection_kw, float) - d
    rated, checked = candidate_rows(snap, source)
    cand_lines = [snap.branch_ids[i] for i in rated]
    cand_v = [snap.locations[i] for i in checked]
    if lines is not None:
        pos = {b: i for i, b in enumerate(snap.branch_ids)}
        rated = [pos[b] for b in lines]
    if voltages is not None:
        pos = {x: i for i, x in enumerate(snap.locations)}
        checked = [pos[x] for x in voltages]
    line_ids = [snap.branch_ids[i] for i in rated]
    v_locs = [snap.locations[i] for i in checked]
    model = SensitivityModel(res)
    sens = model.compute([net.locations.key_of(x) for x in locations], [as_branch_key(x) for x in line_ids],
                         [net.locations.key_of(x) for x in v_locs])
    sending = _sending_buses(net.feeder)
    flow_max = np.empty(len(rated))
    for r, i in enumerate(rated):
        element, node = snap.lines[i]
        k = net.index_of((sending[element.lower()].lower(), node))
        s_max = abs(res.v[k]) * snap.norm_amps[i] * (1.0 - rating_margin) / 1000.0
        flow_max[r] = np.sqrt(max(s_max ** 2 - snap.line_q_kvar[i] ** 2, 0.0))
    at_source = np.isin(net.term_rows, [net.index_of(x) for x in nodes_of[source]])
    p_sub = float(res.element_powers_va()[at_source].real.sum()) / 1000.0
    p_sub -= float(sum(p0[col[x]] for x in nodes_of[source]))
    iv = IntervalNetwork(
        list(locations), d.copy(), p0.copy(), p_sub, np.asarray(sens.loss_factor_p, float), line_ids,
        np.asarray(sens.ptdf, float).reshape(len(line_ids), len(locations)), np.asarray(sens.line_p_kw, float),
        flow_max, v_locs, np.asarray(sens.dv_dp, float).reshape(len(v_locs), len(locations)),
        np.asarray(sens.v_pu, float), np.asarray(snap.v_min_pu, float)[checked] + voltage_margin_pu,
        np.asarray(snap.v_max_pu, float)[checked] - voltage_margin_pu, cand_lines, cand_v)
    iv.ptdf_q = np.asarray(sens.ptdf_q, float).reshape(len(line_ids), len(locations))
    iv.dv_dq = np.asarray(sens.dv_dq, float).reshape(len(v_locs), len(locations))
    iv.loss_factor_q = np.asarray(sens.loss_factor_q, float)
    for name in ("ptdf", "dv_dp", "ptdf_q", "dv_dq", "loss_factor_q"):
        getattr(iv, name)[np.abs(getattr(iv, name)) < SMALL_COEF] = 0.0
    for name in ("loss_factor", "ptdf", "base_flow_kw", "flow_max_kw", "dv_dp", "base_v_pu"):
        if not np.all(np.isfinite(getattr(iv, name))):
            raise ValueError(f"network data: {name} is not finite (power flow or sensitivities failed)")
    return iv


def nominal_load_kw(feeder, locations: list[str]) -> np.ndarray:
    """The feeder's own loads (kW) per node location, a delta or whole-bus load split equally."""
    col = {loc: i for i, loc in enumerate(locations)}
    nominal = np.zeros(len(locations))
    for ld in feeder.loads:
        for node, share in _node_shares(ld):
            nominal[col[f"{ld.bus.lower()}.{node}"]] += ld.kw * share
    return nominal


def nodes_by_bus(locations: list[str]) -> dict[str, list[str]]:
    nodes_of: dict[str, list[str]] = {}
    for loc in locations:
        nodes_of.setdefault(loc.partition(".")[0], []).append(loc)
    return nodes_of


def check_load_shape(intervals: int, load_shape: list[float] | None) -> list[float]:
    shape = [1.0] * intervals if load_shape is None else [float(x) for x in load_shape]
    if len(shape) != intervals or any(not np.isfinite(x) or x < 0 for x in shape):
        raise ValueError(f"load_shape: need {intervals} finite values ≥ 0, got {load_shape!r}")
    return shape


def build_network_data(fn: FeederNetwork, intervals: int, load_shape: list[float] | None = None) -> NetworkData:
    """Solve and linearise `fn` once per interval with its loads × `load_shape[t]` (None: flat 1.0),
    controls held (the feeder's taps as read). The feeder's loads are restored afterwards.
    `iteration.clear_with_ac` linearises at the controlled operating point instead."""
    shape = check_load_shape(intervals, load_shape)
    locations = fn.location_ids()
    loads = [(ld.name, ld.kw, ld.kvar) for ld in fn.feeder.loads]
    nominal = nominal_load_kw(fn.feeder, locations)
    nodes_of = nodes_by_bus(locations)
    out = []
    try:
        for s in shape:
            for name, kw, kvar in loads:
                fn.set_load(name, kw * s, kvar * s)
            snap = fn.solve()
            out.append(interval_network(fn.last, snap, locations, nodes_of, nominal * s))
    finally:
        for name, kw, kvar in loads:
            fn.set_load(name, kw, kvar)
    return NetworkData(fn.feeder.source.bus.lower(), out, nodes_of)
