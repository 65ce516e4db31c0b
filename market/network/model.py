"""Engineering data model of a multi-phase distribution feeder, with validation.

Conventions (the OpenDSS ones, so imported feeders and hand-built ones read the same):
- A bus has numbered nodes (1, 2, 3 = phases a, b, c; 4+ = neutrals/secondary conductors).
  Node 0 is ground (the reference); it is never a solved unknown.
- An element terminal is a bus plus an ordered tuple of conductor nodes, e.g. ("671", (1, 2, 3)).
- Impedances are in ohms and siemens (total for the element, not per length), powers in kW/kvar,
  voltages in kV (line-to-line for 2-/3-phase elements, actual across the element for 1-phase),
  angles in degrees.
- Limits the market checks after a power flow: ampere ratings per conductor (`Line.norm_amps`,
  `Line.emerg_amps`; per transformer winding `Winding.norm_amps`/`emerg_amps`, line current at that
  winding's terminal; 0 = unrated, never overloaded) and per-bus voltage limits (`Bus.v_min_pu`,
  `Bus.v_max_pu`, default V_MIN_PU–V_MAX_PU = 0.95–1.05 pu of the bus base, checked on phase nodes
  1–3). Override with `Feeder.set_rating` / `Feeder.set_voltage_limits`.

`Feeder.validate()` raises a named error (UnknownBusError, PhaseMismatchError,
NonPositiveImpedanceError); islanded sections are detected when the Ybus is built
(`ybus.build_ybus`, IslandedSectionError).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from market.network.errors import UnknownBusError, UnknownElementError  # noqa: F401 (re-exported)
from market.network.validation import _check_amps, _check_limits, validate_feeder

Terminal = tuple[str, tuple[int, ...]]

V_MIN_PU = 0.95  # default voltage limits (ANSI C84.1 range A, OpenDSS's normvminpu/normvmaxpu)
V_MAX_PU = 1.05


@dataclass
class Bus:
    name: str
    nodes: tuple[int, ...] = (1, 2, 3)
    kv_base_ln: float = 0.0  # line-to-neutral base voltage for per-unit results; 0 = unknown
    v_min_pu: float = V_MIN_PU  # voltage limits of the bus's phase nodes (pu of kv_base_ln)
    v_max_pu: float = V_MAX_PU


@dataclass
class Source:
    """Thevenin source: EMF `pu`·`kv_ll` (balanced, phase a at `angle_deg`) behind `z_ohm` (3×3)."""
    name: str
    bus: str
    kv_ll: float
    z_ohm: np.ndarray
    pu: float = 1.0
    angle_deg: float = 0.0
    nodes: tuple[int, ...] = (1, 2, 3)


@dataclass
class Line:
    """Series impedance `z_ohm` (n×n) between two terminals, shunt `y_shunt_s` (n×n) split half/half.

    Switches are lines with `switch=True` (a small impedance, as OpenDSS models them); series
    reactors are lines with `dss_class="reactor"` (their ids read "reactor.<name>").
    `norm_amps`/`emerg_amps`: normal and emergency rating of each conductor (A); 0 = unrated."""
    name: str
    bus1: str
    nodes1: tuple[int, ...]
    bus2: str
    nodes2: tuple[int, ...]
    z_ohm: np.ndarray
    y_shunt_s: np.ndarray | None = None
    switch: bool = False
    norm_amps: float = 0.0
    emerg_amps: float = 0.0
    dss_class: str = "line"


@dataclass
class Winding:
    bus: str
    nodes: tuple[int, ...]  # phases then neutral: n_phases + 1 conductors
    conn: str = "wye"  # "wye" | "delta"
    kv: float = 12.47  # kV LL for 2-/3-phase, actual winding kV for 1-phase
    kva: float = 1000.0
    r_pct: float = 0.2
    tap_pu: float = 1.0
    rneut_ohm: float = -1.0  # < 0: open neutral (OpenDSS default)
    xneut_ohm: float = 0.0
    min_tap_pu: float = 0.9
    max_tap_pu: float = 1.1
    num_taps: int = 32
    norm_amps: float = 0.0  # rating of the line current at this winding's terminal (A); 0 = unrated
    emerg_amps: float = 0.0


@dataclass
class Transformer:
    """n-winding transformer; `xsc_pct` = [X12, X13, X23] (% on winding-1 kVA), as OpenDSS."""
    name: str
    phases: int
    windings: list[Winding]
    xsc_pct: list[float]
    pct_noload_loss: float = 0.0
    pct_imag: float = 0.0
    ppm_antifloat: float = 1.0


@dataclass
class Regulator:
    """Tap controller of `transformer` winding `winding` (1-based), in 120-V base volts (OpenDSS)."""
    name: str
    transformer: str
    winding: int = 2
    vreg_v: float = 120.0
    band_v: float = 3.0
    pt_ratio: float = 60.0
    ct_primary_a: float = 300.0
    r_ldc_v: float = 0.0
    x_ldc_v: float = 0.0
    pt_phase: int = 1
    max_tap_change: int = 16
    enabled: bool = True
    delay_s: float = 15.0
    pt_select: str = "phase"  # "phase" (pt_phase) | "max" | "min": the phase of highest/lowest |V| (OpenDSS ptphase=max|min)
    regulated_bus: str | None = None  # remote regulated bus (OpenDSS bus=): its node's voltage replaces the winding's
    regulated_node: int = 1
    remote_pt_ratio: float = 60.0  # PT ratio applied to the remote bus voltage (OpenDSS remoteptratio)


@dataclass
class Capacitor:
    """Shunt capacitor bank (wye to `nodes2`, ground by default, or delta), `kvar_steps` per step."""
    name: str
    bus: str
    nodes: tuple[int, ...]
    kv: float
    kvar_steps: list[float]
    conn: str = "wye"
    states: list[int] = field(default_factory=list)
    nodes2: tuple[int, ...] | None = None
    bus2: str | None = None

    def __post_init__(self) -> None:
        if not self.states:
            self.states = [1] * len(self.kvar_steps)


@dataclass
class CapControl:
    """Switching of a capacitor, OpenDSS semantics, by `kind`: 'voltage' (V, volts on the PT base),
    'kvar' (kvar into the monitored terminal), 'current' (A on the CT base), 'pf' (power factor,
    settings in −1…1, negative = leading) or 'time' (hour of day). `pt_select`/`ct_select`:
    'phase' (`phase`/`ct_phase`) or 'avg'/'max'/'min' over the phases."""
    name: str
    capacitor: str
    kind: str  # "voltage" | "kvar"
    element: str  # monitored line/transformer name (class-qualified, e.g. "line.l1")
    terminal: int = 1
    on_setting: float = 0.0
    off_setting: float = 0.0
    pt_ratio: float = 60.0
    ct_ratio: float = 60.0
    phase: int = 1
    volt_override: bool = False
    vmin_v: float = 115.0
    vmax_v: float = 126.0
    enabled: bool = True
    delay_s: float = 15.0
    delay_off_s: float = 15.0
    pt_select: str = "phase"
    ct_phase: int = 1
    ct_select: str = "phase"
    pct_min_kvar: float = 50.0  # pf type: close only if the terminal's kvar > this % of the bank
    element_phases: int = 0  # phases of the monitored element (voltage avg/max/min); 0 = terminal 1's conductors


@dataclass
class ShuntReactor:
    """Shunt element (OpenDSS Reactor with no second bus, or with every bus-2 conductor grounded,
    e.g. a neutral grounding reactor): admittance `y_s` (siemens) over `nodes` of `bus`, terminal 1
    only (a grounded terminal 2 is folded in). Its id reads "reactor.<name>"."""
    name: str
    bus: str
    nodes: tuple[int, ...]
    y_s: np.ndarray
    dss_class: str = "reactor"


@dataclass
class Load:
    """ZIP load per phase. `model`: 1 const PQ, 2 const Z, 3 motor, 4 CVR, 5 const |I|, 8 ZIPV."""
    name: str
    bus: str
    nodes: tuple[int, ...]  # wye: phases + neutral; delta: the conductors of the delta
    phases: int
    kw: float
    kvar: float
    kv: float
    conn: str = "wye"
    model: int = 1
    zipv: tuple[float, ...] | None = None
    vmin_pu: float = 0.95
    vmax_pu: float = 1.05
    vlow_pu: float = 0.50
    cvr_watts: float = 1.0
    cvr_vars: float = 2.0


@dataclass
class Generator:
    """Inverter-based DER: injects `kw` and `kvar` (or Q from `qv_curve` [(v_pu, q_kvar)]).

    Also OpenDSS PVSystem and Storage elements (`dss_class` "pvsystem"/"storage", their ids read
    "pvsystem.<name>"), with their `inverter` (der.Inverter: ratings, limits, priorities)."""
    name: str
    bus: str
    nodes: tuple[int, ...]
    phases: int
    kw: float
    kvar: float
    kv: float
    conn: str = "wye"
    vmin_pu: float = 0.90
    vmax_pu: float = 1.10
    qv_curve: list[tuple[float, float]] | None = None
    dss_class: str = "generator"
    inverter: object | None = None  # der.Inverter for PVSystem/Storage


@dataclass
class Feeder:
    name: str
    buses: dict[str, Bus]
    source: Source
    lines: list[Line] = field(default_factory=list)
    transformers: list[Transformer] = field(default_factory=list)
    capacitors: list[Capacitor] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    generators: list[Generator] = field(default_factory=list)
    regulators: list[Regulator] = field(default_factory=list)
    cap_controls: list[CapControl] = field(default_factory=list)
    base_frequency_hz: float = 60.0
    controls_on: bool = True  # False: taps/capacitor states are held (OpenDSS `set controlmode=off`)
    inv_controls: list = field(default_factory=list)  # der.InvControl (volt-var / volt-watt)
    shunts: list[ShuntReactor] = field(default_factory=list)  # shunt reactors
    time_h: float = 0.0  # hour of the solution (OpenDSS's hour + sec/3600): time-type capacitor controls

    def transformer(self, name: str) -> Transformer:
        """By name; a position cache (not a field) checked on every hit, rebuilt when stale."""
        pos = self.__dict__.get("_transformer_pos")
        for attempt in range(2):
            i = pos.get(name) if pos is not None else None
            if i is not None and i < len(self.transformers) and self.transformers[i].name == name:
                return self.transformers[i]
            if attempt == 0:
                pos = self.__dict__["_transformer_pos"] = {tr.name: k for k, tr in enumerate(self.transformers)}
        raise UnknownElementError(f"no transformer named {name!r}")

    def load(self, name: str) -> Load:
        for ld in self.loads:
            if ld.name == name:
                return ld
        raise UnknownElementError(f"no load named {name!r}")

    def validate(self) -> "Feeder":
        validate_feeder(self)
        return self

    def set_rating(self, element: str, norm_amps: float | None = None, emerg_amps: float | None = None,
                   winding: int | None = None) -> None:
        """Override the ampere ratings of `element` ("line.650632", or "transformer.sub" with its
        1-based `winding`); None keeps a rating, 0 makes it unrated."""
        kind, _, name = element.lower().partition(".")
        if kind in ("line", "reactor"):
            if winding is not None:
                raise UnknownElementError(f"{element}: a {kind} has no windings")
            target = _find([ln for ln in self.lines if ln.dss_class == kind], name, element)
        elif kind == "transformer":
            windings = self.transformer(name).windings
            if winding is None or not 1 <= winding <= len(windings):
                raise UnknownElementError(f"{element}: give winding= 1..{len(windings)} (ratings are per winding)")
            target = windings[winding - 1]
        else:
            raise UnknownElementError(f"{element!r}: ratings are set on 'line.<name>', 'reactor.<name>' "
                                      "or 'transformer.<name>'")
        for attr, value in (("norm_amps", norm_amps), ("emerg_amps", emerg_amps)):
            if value is not None:
                _check_amps(element, attr, value)
                setattr(target, attr, float(value))

    def set_voltage_limits(self, v_min_pu: float | None = None, v_max_pu: float | None = None,
                           buses: list[str] | None = None) -> None:
        """Override the voltage limits of `buses` (None: every bus); None keeps a limit."""
        names = list(self.buses) if buses is None else list(buses)
        for name in names:
            if name not in self.buses:
                raise UnknownBusError(f"set_voltage_limits: unknown bus {name!r}")
        for name in names:
            bus = self.buses[name]
            lo = bus.v_min_pu if v_min_pu is None else float(v_min_pu)
            hi = bus.v_max_pu if v_max_pu is None else float(v_max_pu)
            _check_limits(f"bus {name!r}", lo, hi)
            bus.v_min_pu, bus.v_max_pu = lo, hi


def _find(items, name: str, element: str):
    for el in items:
        if el.name == name:
            return el
    raise UnknownElementError(f"no element named {element!r}")
