"""OpenDSS as the reference: solve a compiled circuit in the engine and read its answer.

Used by the validation tests and the bench (same process, same circuit). The usual protocol:
`compile_dss(path)`, `solve_opendss(controls=True)` to let the engine settle regulator taps and
capacitors, then `freeze_controls()` (`set controlmode=off`) so both tools solve with the same
taps; `feeder_from_engine()` then imports exactly that state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceSolution:
    v: dict[tuple[str, int], complex]  # volts, per (bus, node)
    losses_kw: float
    losses_kvar: float
    converged: bool
    iterations: int


def _dss():
    import opendssdirect as dss

    return dss


def solve_opendss(controls: bool = True, tolerance: float = 1e-8, max_iter: int = 100) -> ReferenceSolution:
    dss = _dss()
    dss.Text.Command(f"set maxiterations={max_iter}")
    dss.Text.Command("set maxcontroliter=100")
    dss.Text.Command(f"set tolerance={tolerance}")
    if not controls:
        dss.Text.Command("set controlmode=off")
    dss.Solution.Solve()
    return read_solution()


def freeze_controls() -> None:
    _dss().Text.Command("set controlmode=off")


def read_solution() -> ReferenceSolution:
    dss = _dss()
    names = dss.Circuit.AllNodeNames()
    raw = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    volts = raw[0::2] + 1j * raw[1::2]
    v = {}
    for name, val in zip(names, volts):
        bus, node = name.rsplit(".", 1)
        v[(bus.lower(), int(node))] = complex(val)
    loss = dss.Circuit.Losses()
    return ReferenceSolution(v, loss[0] / 1000.0, loss[1] / 1000.0, bool(dss.Solution.Converged()),
                             int(dss.Solution.Iterations()))


def transformer_taps() -> dict[str, list[float]]:
    dss = _dss()
    out = {}
    ok = dss.Transformers.First()
    while ok:
        taps = []
        for w in range(1, dss.Transformers.NumWindings() + 1):
            dss.Transformers.Wdg(w)
            taps.append(float(dss.Transformers.Tap()))
        out[dss.Transformers.Name().lower()] = taps
        ok = dss.Transformers.Next()
    return out


def compare(ref: ReferenceSolution, res) -> tuple[float, float]:
    """(max |ΔV| pu over every node OpenDSS reports, relative total-loss error) of a colorgrid
    PowerFlowResult `res` against `ref`."""
    net = res.network
    keys = list(ref.v)
    mine = np.array([res.v[net.index[k]] for k in keys])
    theirs = np.array([ref.v[k] for k in keys])
    base = np.array([net.vbase_v[net.index[k]] for k in keys])
    loss = res.losses_va().real / 1000.0
    return float(np.max(np.abs(mine - theirs) / base)), abs(loss - ref.losses_kw) / ref.losses_kw


def solve_opendss_qsts(mode: str, steps: int, step_s: float, regulators: list[str], tolerance: float = 1e-9,
                       max_control_iter: int = 1000):
    """OpenDSS's own time series on the compiled circuit: `set mode=<mode> stepsize=<step_s>s`,
    then one `solve` of `number=1` per step (the same as number=steps). Yields per step
    (ReferenceSolution, [RegControl TapNumber per name in `regulators`]). Every regulator logs
    its tap changes (`eventlog=yes`, read by `tap_operations_logged`)."""
    dss = _dss()
    dss.Text.Command(f"set maxiterations=100 maxcontroliter={max_control_iter} tolerance={tolerance}")
    if regulators:
        dss.Text.Command("batchedit regcontrol..* eventlog=yes")
    dss.Text.Command(f"set mode={mode} stepsize={step_s}s number=1")
    for _ in range(steps):
        dss.Solution.Solve()
        ref = read_solution()
        if not ref.converged:
            raise RuntimeError("OpenDSS did not converge in a time step")
        taps = []
        for name in regulators:
            dss.RegControls.Name(name)
            taps.append(int(dss.RegControls.TapNumber()))
        yield ref, taps


def tap_operations_logged() -> int:
    """Tap steps moved by every regulator, summed from OpenDSS's event log ("CHANGED n TAPS")."""
    import re

    total = 0
    for line in _dss().Solution.EventLog():
        m = re.search(r"CHANGED\s+(-?\d+)\s+TAP", line.upper())
        if m and "REGULATOR." in line.upper():
            total += abs(int(m.group(1)))
    return total
