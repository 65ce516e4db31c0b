"""Validation of the feeder data model (`Feeder.validate()`): every reference and shape, the first
named error found is raised (UnknownBusError, PhaseMismatchError, NonPositiveImpedanceError,
InvalidLimitError, UnknownElementError). Moved out of model.py; `model.validate_feeder` is this one."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from market.network.errors import (InvalidLimitError, NonPositiveImpedanceError, PhaseMismatchError,
                                   UnknownBusError, UnknownElementError)

CAP_CONTROL_KINDS = ("voltage", "kvar", "current", "pf", "time")

if TYPE_CHECKING:
    from market.network.model import Feeder, Line, Transformer


def _check_amps(where: str, attr: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise InvalidLimitError(f"{where}: {attr} must be a finite number >= 0 (0 = unrated), got {value!r}")


def _check_limits(where: str, v_min_pu: float, v_max_pu: float) -> None:
    if not (math.isfinite(v_min_pu) and math.isfinite(v_max_pu) and 0 < v_min_pu < v_max_pu):
        raise InvalidLimitError(f"{where}: voltage limits need 0 < v_min_pu < v_max_pu, "
                                        f"got {v_min_pu!r}, {v_max_pu!r}")


def _check_terminal(feeder: Feeder, where: str, bus: str, nodes: tuple[int, ...]) -> None:
    if bus not in feeder.buses:
        raise UnknownBusError(f"{where}: unknown bus {bus!r}")
    known = set(feeder.buses[bus].nodes) | {0}
    bad = [n for n in nodes if n not in known]
    if bad:
        raise PhaseMismatchError(f"{where}: bus {bus!r} has no node(s) {bad} (has {feeder.buses[bus].nodes})")


def _check_square(where: str, name: str, m: np.ndarray | None, n: int) -> None:
    if m is None:
        return
    m = np.asarray(m)
    if m.shape != (n, n):
        raise PhaseMismatchError(f"{where}: {name} is {m.shape}, expected ({n}, {n}) for {n} conductors")
    if not np.all(np.isfinite(m)):
        raise NonPositiveImpedanceError(f"{where}: {name} has non-finite entries")


def _line_conditions(lines: list[Line]) -> list[float | None]:
    """cond(z_ohm) of every line with a square, finite z (None otherwise: its own checks name it),
    one stacked SVD per conductor count instead of one call per line."""
    out: list[float | None] = [None] * len(lines)
    groups: dict[int, list[int]] = {}
    for i, line in enumerate(lines):
        z = np.asarray(line.z_ohm)
        if z.ndim == 2 and z.shape[0] == z.shape[1] and np.all(np.isfinite(z)):
            groups.setdefault(z.shape[0], []).append(i)
    for members in groups.values():
        conds = np.linalg.cond(np.stack([np.asarray(lines[i].z_ohm, dtype=complex) for i in members]))
        for i, c in zip(members, conds):
            out[i] = float(c)
    return out


def _validate_line(feeder: Feeder, line: Line, cond: float | None = None) -> None:
    where = f"line {line.name!r}"
    _check_terminal(feeder, where, line.bus1, line.nodes1)
    _check_terminal(feeder, where, line.bus2, line.nodes2)
    n = len(line.nodes1)
    if len(line.nodes2) != n:
        raise PhaseMismatchError(f"{where}: {n} conductors at bus1 but {len(line.nodes2)} at bus2")
    _check_square(where, "z_ohm", line.z_ohm, n)
    _check_square(where, "y_shunt_s", line.y_shunt_s, n)
    z = np.asarray(line.z_ohm, dtype=complex)
    if np.any(z.diagonal().real < 0) or np.any(np.abs(z.diagonal()) <= 0):
        raise NonPositiveImpedanceError(f"{where}: self impedances must have R >= 0 and |Z| > 0")
    if (np.linalg.cond(z) if cond is None else cond) > 1e14:
        raise NonPositiveImpedanceError(f"{where}: z_ohm is singular")
    _check_amps(where, "norm_amps", line.norm_amps)
    _check_amps(where, "emerg_amps", line.emerg_amps)


def _lines_ok(feeder: Feeder) -> bool:
    """True when every line passes `_validate_line`, checked in stacked numpy per conductor
    count (a large feeder's cold path); False sends validation through the per-line checks."""
    known = {name: set(bus.nodes) | {0} for name, bus in feeder.buses.items()}
    groups: dict[int, list[Line]] = {}
    for line in feeder.lines:
        n = len(line.nodes1)
        k1, k2 = known.get(line.bus1), known.get(line.bus2)
        if (k1 is None or k2 is None or not k1.issuperset(line.nodes1) or not k2.issuperset(line.nodes2)
                or len(line.nodes2) != n or not _rating_ok(line.norm_amps) or not _rating_ok(line.emerg_amps)):
            return False
        groups.setdefault(n, []).append(line)
    for n, members in groups.items():
        try:
            z = np.array([line.z_ohm for line in members], dtype=complex)
            shunts = [line.y_shunt_s for line in members if line.y_shunt_s is not None]
            y = np.array(shunts, dtype=complex) if shunts else np.zeros((0, n, n), complex)
        except (ValueError, TypeError):  # ragged shapes
            return False
        if z.shape != (len(members), n, n) or y.shape != (len(shunts), n, n):
            return False
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(y))):
            return False
        diag = np.diagonal(z, axis1=1, axis2=2)
        if np.any(diag.real < 0) or np.any(np.abs(diag) <= 0) or np.any(np.linalg.cond(z) > 1e14):
            return False
    return True


def _rating_ok(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _validate_transformer(feeder: Feeder, tr: Transformer) -> None:
    where = f"transformer {tr.name!r}"
    if len(tr.windings) < 2:
        raise PhaseMismatchError(f"{where}: needs at least 2 windings")
    need_x = len(tr.windings) * (len(tr.windings) - 1) // 2
    if len(tr.xsc_pct) != need_x:
        raise PhaseMismatchError(f"{where}: {len(tr.xsc_pct)} xsc_pct values, expected {need_x}")
    for i, w in enumerate(tr.windings, 1):
        _check_terminal(feeder, f"{where} winding {i}", w.bus, w.nodes)
        if len(w.nodes) != tr.phases + 1:
            raise PhaseMismatchError(f"{where} winding {i}: {len(w.nodes)} nodes, expected phases+1 = {tr.phases + 1}")
        if w.conn not in ("wye", "delta"):
            raise PhaseMismatchError(f"{where} winding {i}: conn must be wye or delta, got {w.conn!r}")
        if w.kv <= 0 or w.kva <= 0 or w.tap_pu <= 0:
            raise NonPositiveImpedanceError(f"{where} winding {i}: kv, kva and tap_pu must be > 0")
        _check_amps(f"{where} winding {i}", "norm_amps", w.norm_amps)
        _check_amps(f"{where} winding {i}", "emerg_amps", w.emerg_amps)
    if any(x <= 0 for x in tr.xsc_pct):
        raise NonPositiveImpedanceError(f"{where}: leakage reactances xsc_pct must be > 0")


def _validate_shunts(feeder: Feeder) -> None:
    for sh in feeder.shunts:
        where = f"reactor {sh.name!r}"
        _check_terminal(feeder, where, sh.bus, sh.nodes)
        _check_square(where, "y_s", sh.y_s, len(sh.nodes))
    for cap in feeder.capacitors:
        where = f"capacitor {cap.name!r}"
        _check_terminal(feeder, where, cap.bus, cap.nodes)
        if cap.kv <= 0 or any(k < 0 for k in cap.kvar_steps):
            raise NonPositiveImpedanceError(f"{where}: kv must be > 0 and kvar_steps >= 0")
        if len(cap.states) != len(cap.kvar_steps):
            raise PhaseMismatchError(f"{where}: {len(cap.states)} states for {len(cap.kvar_steps)} steps")
    for kind, items in (("load", feeder.loads), ("generator", feeder.generators)):
        for el in items:
            where = f"{kind} {el.name!r}"
            _check_terminal(feeder, where, el.bus, el.nodes)
            need = el.phases + 1 if el.conn == "wye" else max(el.phases, 2)
            if len(el.nodes) != need:
                raise PhaseMismatchError(f"{where}: {len(el.nodes)} nodes for {el.phases}-phase {el.conn}, expected {need}")
            if el.kv <= 0:
                raise NonPositiveImpedanceError(f"{where}: kv must be > 0")


def validate_feeder(feeder: Feeder) -> None:
    """Check every reference and shape; raise the first named error found."""
    for bus in feeder.buses.values():
        _check_limits(f"bus {bus.name!r}", bus.v_min_pu, bus.v_max_pu)
    src = feeder.source
    _check_terminal(feeder, f"source {src.name!r}", src.bus, src.nodes)
    _check_square(f"source {src.name!r}", "z_ohm", src.z_ohm, len(src.nodes))
    if src.kv_ll <= 0 or np.linalg.cond(np.asarray(src.z_ohm, dtype=complex)) > 1e14:
        raise NonPositiveImpedanceError(f"source {src.name!r}: kv_ll must be > 0 and z_ohm non-singular")
    if not _lines_ok(feeder):  # the one-by-one checks name the first bad line
        for line, cond in zip(feeder.lines, _line_conditions(feeder.lines)):
            _validate_line(feeder, line, cond)
    for tr in feeder.transformers:
        _validate_transformer(feeder, tr)
    _validate_shunts(feeder)
    names = {tr.name for tr in feeder.transformers}
    for reg in feeder.regulators:
        if reg.transformer not in names:
            raise UnknownElementError(f"regulator {reg.name!r}: unknown transformer {reg.transformer!r}")
        if reg.pt_select not in ("phase", "max", "min"):
            raise PhaseMismatchError(f"regulator {reg.name!r}: pt_select must be phase, max or min")
        if reg.regulated_bus is not None:
            _check_terminal(feeder, f"regulator {reg.name!r} regulated bus", reg.regulated_bus, (reg.regulated_node,))
    caps = {c.name for c in feeder.capacitors}
    for cc in feeder.cap_controls:
        if cc.capacitor not in caps:
            raise UnknownElementError(f"capcontrol {cc.name!r}: unknown capacitor {cc.capacitor!r}")
        if cc.kind not in CAP_CONTROL_KINDS:
            raise PhaseMismatchError(f"capcontrol {cc.name!r}: kind {cc.kind!r} is not one of {CAP_CONTROL_KINDS}")
        if cc.kind == "pf" and not (-1.0 <= cc.on_setting <= 1.0 and -1.0 <= cc.off_setting <= 1.0):
            raise InvalidLimitError(f"capcontrol {cc.name!r}: pf settings must be in -1..1")
