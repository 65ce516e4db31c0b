"""Convert a circuit compiled in the OpenDSS engine (opendssdirect.py) into the data model.

The engine resolves line codes, geometries, units, `like=` and edits; we read every element
after compile: lines, series and shunt reactors by their primitive matrix (Z and shunt Y in ohms and
siemens, total), transformers, capacitors, loads and generators by their engineering
parameters, the source by its Thevenin matrix. Ampere ratings come from the engine as well
(`CktElement.NormalAmps/EmergAmps`: a line's normamps/emergamps; a transformer's winding-1 rating,
which OpenDSS derives from normhkva/emerghkva, scaled to the other windings by their kVA and kV);
per-bus voltage limits from the circuit's `normvminpu`/`normvmaxpu`. Anything else that carries current is
reported by name (UnsupportedElementError), never dropped silently; measurement-only elements
(energy meters, monitors) are listed in `ImportReport.ignored`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from market.network.dss_batch import ClassBatch, bus_table, class_floats
from market.network.errors import OpenDSSImportError, UnsupportedElementError
from market.network.gcpause import paused
from market.network.model import (Bus, Capacitor, Feeder, Generator, Line, Load, ShuntReactor, Source,
                                  Transformer, Winding)

SUPPORTED = {"vsource", "line", "transformer", "capacitor", "load", "generator", "regcontrol",
             "capcontrol", "reactor", "pvsystem", "storage", "invcontrol"}
MEASUREMENT_ONLY = {"energymeter", "monitor", "sensor"}
CONTROLS = {"invcontrol", "regcontrol", "capcontrol", "storagecontroller", "expcontrol", "swtcontrol", "relay",
            "recloser", "fuse", "genericcontrol", "upfccontrol", "esppvcontrol"}


@dataclass
class ImportReport:
    ignored: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    controls_on: bool = True


def _dss():
    import opendssdirect as dss  # imported lazily: the data model itself does not need OpenDSS

    return dss


def compile_dss(path: str | Path) -> None:
    """Clear the engine and compile `path` (its `redirect`s and edits are honoured)."""
    dss = _dss()
    cwd = os.getcwd()  # the engine changes the process's working folder on compile: restore it
    dss.Text.Command("clear")
    try:
        dss.Text.Command(f'compile "{Path(path).resolve()}"')
    except Exception as exc:  # the engine's DSSException: re-raise as a named error
        raise OpenDSSImportError(f"OpenDSS could not compile {path}: {exc}") from exc
    finally:
        os.chdir(cwd)
    if not dss.Circuit.Name():
        raise OpenDSSImportError(f"{path} defines no circuit")


def _query(prop: str) -> str:
    dss = _dss()
    dss.Text.Command(f"? {prop}")
    return dss.Text.Result().strip()


def _numbers(text: str) -> list[float]:
    return [float(t) for t in re.split(r"[\s,\[\]\(\)\"']+", text) if t]


def _yprim() -> np.ndarray:
    dss = _dss()
    raw = np.asarray(dss.CktElement.YPrim(), dtype=float)
    n = int(round(math.sqrt(raw.size // 2)))
    return (raw[0::2] + 1j * raw[1::2]).reshape(n, n)


def _terminals() -> list[tuple[str, tuple[int, ...]]]:
    dss = _dss()
    nc = dss.CktElement.NumConductors()
    order = list(dss.CktElement.NodeOrder())
    buses = [b.split(".")[0].lower() for b in dss.CktElement.BusNames()]
    return [(bus, tuple(int(k) for k in order[t * nc:(t + 1) * nc])) for t, bus in enumerate(buses)]


def _activate(full_name: str) -> None:
    _dss().Circuit.SetActiveElement(full_name)


def _ratings() -> tuple[float, float]:
    """(normal, emergency) amps of the active element's terminal 1 as OpenDSS rates it."""
    dss = _dss()
    return float(dss.CktElement.NormalAmps()), float(dss.CktElement.EmergAmps())


def _buses(elements: list[str]) -> dict[str, Bus]:
    dss = _dss()
    lo, hi = float(dss.Settings.NormVminpu()), float(dss.Settings.NormVmaxpu())
    out: dict[str, Bus] = {}
    has_inv = any(e.lower().startswith("invcontrol.") for e in elements)
    used = _nodes_of_power_elements(elements) if has_inv else None
    for name, kv, nodes in zip(*bus_table()):
        name = name.lower()
        nodes = [k for k in nodes if used is None or (name, k) in used]
        out[name] = Bus(name, tuple(sorted(nodes)), float(kv), lo, hi)
    return out


def _nodes_of_power_elements(elements: list[str]) -> set[tuple[str, int]]:
    """(bus, node) of every power element's conductors. An InvControl's terminal takes its first
    DER's bus with three conductors and so adds phantom nodes ("611.2" beside a 1-phase PV at
    611.3) that nothing connects: OpenDSS carries them, we do not."""
    dss = _dss()
    used: set[tuple[str, int]] = set()
    for full in elements:
        if full.split(".")[0].lower() in CONTROLS | MEASUREMENT_ONLY:
            continue
        _activate(full)
        used.update((bus, k) for bus, nodes in _terminals() for k in nodes)
    return used


def _source() -> Source:
    dss = _dss()
    dss.Vsources.First()
    name = dss.Vsources.Name()
    _activate(f"vsource.{name}")
    (bus, nodes), *_ = _terminals()
    n = len(nodes)
    y = _yprim()[:n, :n]
    return Source(name, bus, float(dss.Vsources.BasekV()), np.linalg.inv(y), float(dss.Vsources.PU()),
                  float(dss.Vsources.AngleDeg()), nodes)


def _series_raw(name: str, switch: bool, dss_class: str = "line") -> tuple:
    """The active element's terminals, flat Yprim (re, im pairs) and ratings, converted later in
    a batch (`_series_batch`); bus names from the element's first two terminals."""
    dss = _dss()
    order = dss.CktElement.NodeOrder()
    buses = dss.CktElement.BusNames()
    n = len(order) // 2
    return (name, buses[0].split(".")[0].lower(), tuple(order[:n]), buses[1].split(".")[0].lower(),
            tuple(order[n:]), dss.CktElement.YPrim(), switch,
            (float(dss.CktElement.NormalAmps()), float(dss.CktElement.EmergAmps())), dss_class)


def _series_batch(raws: list[tuple]) -> list[Line]:
    """Lines from Yprims: series admittance Ys = −Y12, refused when singular (cond > 1e14),
    Z = Ys⁻¹, shunt = 2·(Y11 − Ys) (None when negligible); one stacked condition number and
    inverse per conductor count (the same LAPACK routine per matrix as one by one)."""
    out: list[Line | None] = [None] * len(raws)
    sizes = np.array([len(r[2]) for r in raws], dtype=np.int64)
    for n in np.unique(sizes):
        members = np.nonzero(sizes == n)[0]
        flat = np.array([raws[i][5] for i in members], dtype=float)
        y = (flat[:, 0::2] + 1j * flat[:, 1::2]).reshape(len(members), 2 * n, 2 * n)
        ys = -y[:, :n, n:]
        bad = np.nonzero(np.linalg.cond(ys) > 1e14)[0]
        if len(bad):
            name = raws[members[bad[0]]][0]
            raise OpenDSSImportError(f"{name}: singular series admittance (open conductor or zero impedance)")
        shunt = (y[:, :n, :n] - ys) * 2.0
        keep = (np.max(np.abs(shunt), axis=(1, 2)) > 1e-12 * np.max(np.abs(ys), axis=(1, 2))).tolist()
        z = np.linalg.inv(ys)
        for j, i in enumerate(members.tolist()):
            name, b1, n1, b2, n2, _, switch, ratings, dss_class = raws[i]
            out[i] = Line(name, b1, n1, b2, n2, z[j], shunt[j] if keep[j] else None, switch, *ratings, dss_class)
    return out


def _lines() -> list[Line]:
    """Every enabled line, read in bulk (dss_batch): buses, switch flag and ratings of all lines in
    one call each, Yprim and node order from each element's pointer."""
    with ClassBatch("line") as batch:
        on = [i for i, en in enumerate(batch.enabled()) if en]
        bus1, bus2, switch = batch.strings("bus1"), batch.strings("bus2"), batch.strings("switch")
        norm, emerg = batch.floats("normamps").tolist(), batch.floats("emergamps").tolist()
        orders, yprims = batch.node_orders(on), batch.yprims(on)
        names = batch.names
    raws = []
    for i, order, yp in zip(on, orders, yprims):
        n = len(order) // 2
        raws.append((names[i], bus1[i].split(".")[0].lower(), tuple(order[:n]), bus2[i].split(".")[0].lower(),
                     tuple(order[n:]), yp, switch[i].strip().lower().startswith(("y", "t")),
                     (norm[i], emerg[i]), "line"))
    return _series_batch(raws)


def _reactors() -> tuple[list[Line], list[ShuntReactor]]:
    """Series reactors (as lines) and shunt reactors: no second bus, or every bus-2 conductor
    grounded (a neutral grounding reactor bus1=sub.4 bus2=sub.0); a shunt keeps the engine's
    Yprim over its terminal-1 conductors (the grounded terminal drops out of the Ybus anyway)."""
    dss = _dss()
    raws, shunts = [], []
    ok = dss.Reactors.First()
    while ok:
        full = f"reactor.{dss.Reactors.Name()}"
        ok = dss.Reactors.Next()
        _activate(full)
        if not dss.CktElement.Enabled():
            continue
        terms = _terminals()
        name = full.split(".", 1)[1].lower()
        if len(terms) < 2 or all(k == 0 for k in terms[1][1]):
            bus, nodes = terms[0]
            shunts.append(ShuntReactor(name, bus, nodes, _yprim()[:len(nodes), :len(nodes)].copy()))
            continue
        raws.append(_series_raw(name, False, "reactor"))
    return _series_batch(raws), shunts


def _transformers() -> list[Transformer]:
    """Every enabled transformer: the properties of all of them in one batch read each
    (dss_batch), per winding only what the engine keeps per active winding (neutral impedance,
    tap range and steps), through the Transformers iterator."""
    with ClassBatch("transformer") as batch:
        on = [i for i, en in enumerate(batch.enabled()) if en]
        lists = {p: [_items(x) for x in batch.strings(p)] for p in ("conns", "kvs", "kvas", "%rs", "taps", "buses")}
        nums = {p: batch.floats(p).tolist() for p in ("xhl", "xht", "xlt", "%noloadloss", "%imag", "ppm_antifloat")}
        phases = batch.ints("phases").tolist()
        orders = dict(zip(on, batch.node_orders(on)))
        names = batch.names
    per_winding = _winding_settings()
    out = []
    for i in on:
        nc = phases[i] + 1
        wdgs = []
        rows, ratings = per_winding[names[i]]
        for w, (rneut, xneut, tmin, tmax, ntaps) in enumerate(rows):
            conn = "delta" if lists["conns"][i][w].lower().startswith(("d", "ll")) else "wye"
            wdgs.append(Winding(lists["buses"][i][w].split(".")[0].lower(), tuple(orders[i][w * nc:(w + 1) * nc]),
                                conn, float(lists["kvs"][i][w]), float(lists["kvas"][i][w]),
                                float(lists["%rs"][i][w]), float(lists["taps"][i][w]), rneut, xneut, tmin, tmax, ntaps))
        _winding_ratings(wdgs, *ratings)
        xsc = [nums["xhl"][i]]
        if len(wdgs) == 3:
            xsc += [nums["xht"][i], nums["xlt"][i]]
        elif len(wdgs) > 3:
            xsc = _numbers(_query(f"transformer.{names[i]}.xscarray"))
        out.append(Transformer(names[i], phases[i], wdgs, xsc, nums["%noloadloss"][i], nums["%imag"][i],
                               nums["ppm_antifloat"][i]))
    return out


def _items(text: str) -> list[str]:
    """The entries of an array property as the engine prints it: "[wye, delta, ]" -> ["wye", "delta"]."""
    return [t for t in re.split(r"[\s,\[\]\(\)\"']+", text) if t]


def _winding_settings() -> dict[str, tuple[list[tuple[float, float, float, float, int]], tuple[float, float]]]:
    """{transformer: ([(rneut, xneut, mintap, maxtap, numtaps) per winding], terminal-1 ratings)}:
    the engine keeps the first for the active winding only (so one Transformers.Wdg per winding)."""
    t = _dss().Transformers
    out = {}
    ok = t.First()
    while ok:
        rows = []
        for w in range(1, t.NumWindings() + 1):
            t.Wdg(w)
            rows.append((float(t.Rneut()), float(t.Xneut()), float(t.MinTap()), float(t.MaxTap()), int(t.NumTaps())))
        out[t.Name().lower()] = rows, _ratings()
        ok = t.Next()
    return out


def _winding_ratings(windings: list[Winding], norm: float, emerg: float) -> None:
    """OpenDSS rates winding 1 (normhkva/phases over its phase kV); winding w gets the same
    per-unit rating on its own kVA and kV: I_w = I_1 · (kVA_w/kVA_1) · (kV_1/kV_w)."""
    w1 = windings[0]
    for w in windings:
        scale = (w.kva / w1.kva) * (w1.kv / w.kv)
        w.norm_amps, w.emerg_amps = norm * scale, emerg * scale


def _capacitors() -> list[Capacitor]:
    dss = _dss()
    out = []
    ok = dss.Capacitors.First()
    while ok:
        name = dss.Capacitors.Name()
        _activate(f"capacitor.{name}")
        if dss.CktElement.Enabled():
            terms = _terminals()
            steps = _numbers(_query(f"capacitor.{name}.kvar"))
            nsteps = int(dss.Capacitors.NumSteps())
            if len(steps) == 1 and nsteps > 1:
                steps = [steps[0] / nsteps] * nsteps
            delta = bool(dss.Capacitors.IsDelta())
            cap = Capacitor(name, terms[0][0], terms[0][1], float(dss.Capacitors.kV()), steps,
                            "delta" if delta else "wye", [int(s) for s in dss.Capacitors.States()])
            if not delta and len(terms) > 1:
                cap.bus2, cap.nodes2 = terms[1]
            out.append(cap)
        ok = dss.Capacitors.Next()
    return out


def _loads(load_mult: float) -> list[Load]:
    """Every enabled load, each property of all loads in one batch read (dss_batch)."""
    with ClassBatch("load") as batch:
        on = [i for i, en in enumerate(batch.enabled()) if en]
        f = {p: batch.floats(p).tolist() for p in ("kw", "kvar", "kv", "vminpu", "vmaxpu", "vlowpu", "cvrwatts",
                                                     "cvrvars")}
        model, phases = batch.ints("model").tolist(), batch.ints("phases").tolist()
        status, conn, bus1 = batch.strings("status"), batch.strings("conn"), batch.strings("bus1")
        zipv = batch.strings("zipv") if 8 in model else None
        orders = batch.node_orders(on)
        names = batch.names
    out = []
    for i, order in zip(on, orders):
        mult = load_mult if status[i].strip().lower().startswith("v") else 1.0  # fixed and exempt ignore LoadMult
        conn_i = "delta" if conn[i].strip().lower().startswith(("d", "ll")) else "wye"
        out.append(Load(names[i], bus1[i].split(".")[0].lower(), tuple(order), phases[i], f["kw"][i] * mult,
                        f["kvar"][i] * mult, f["kv"][i], conn_i, model[i],
                        tuple(_numbers(zipv[i])) if model[i] == 8 else None, f["vminpu"][i], f["vmaxpu"][i],
                        f["vlowpu"][i], f["cvrwatts"][i], f["cvrvars"][i]))
    return out


def _generators(unsupported: list[str]) -> list[Generator]:
    dss = _dss()
    out = []
    ok = dss.Generators.First()
    while ok:
        name = dss.Generators.Name()
        _activate(f"generator.{name}")
        if dss.CktElement.Enabled():
            if int(dss.Generators.Model()) != 1:
                unsupported.append(f"generator.{name} (model={dss.Generators.Model()}, only model=1 is supported)")
            else:
                (bus, nodes), = _terminals()[:1]
                conn = _query(f"generator.{name}.conn").lower()
                out.append(Generator(name, bus, nodes, int(dss.CktElement.NumPhases()), float(dss.Generators.kW()),
                                     float(dss.Generators.kvar()), float(dss.Generators.kV()),
                                     "delta" if conn.startswith("d") or conn.startswith("l") else "wye",
                                     float(_query(f"generator.{name}.vminpu")),
                                     float(_query(f"generator.{name}.vmaxpu"))))
        ok = dss.Generators.Next()
    return out


def feeder_from_engine(strict: bool = True) -> tuple[Feeder, ImportReport]:
    """Read the circuit currently compiled in the engine; raise UnsupportedElementError if strict."""
    with paused():
        return _feeder_from_engine(strict)


def _feeder_from_engine(strict: bool) -> tuple[Feeder, ImportReport]:
    dss = _dss()
    if int(dss.Solution.Mode()) != 0:
        raise OpenDSSImportError("only snapshot mode is supported (load shapes are not applied); "
                                 f"the circuit is in solution mode {dss.Solution.Mode()}")
    dss.Text.Command("makebuslist")  # elements added after the last solve get their node lists
    report = ImportReport(controls_on=int(dss.Solution.ControlMode()) != -1)
    unsupported: list[str] = []
    n_src = 0
    elements = dss.Circuit.AllElementNames()
    for full in elements:
        cls = full.split(".")[0].lower()
        if cls == "vsource":
            n_src += 1
            if n_src > 1:
                unsupported.append(full + " (only one source is supported)")
        elif cls in MEASUREMENT_ONLY:
            report.ignored.append(full)
        elif cls not in SUPPORTED:
            dss.Circuit.SetActiveElement(full)
            (unsupported if dss.CktElement.Enabled() else report.disabled).append(full)
    from market.network import opendss_der  # PVSystem, Storage, InvControl (imports this module's helpers)

    from market.network import opendss_controls  # RegControl, CapControl

    if dss.Solution.SystemYChanged():  # elements added after the last solve: their Yprims are not formed yet
        dss.Solution.BuildYMatrix(1, 0)
    ders = opendss_der.pvsystems(unsupported) + opendss_der.storages(unsupported)
    series_reactors, shunts = _reactors()
    feeder = Feeder(
        name=dss.Circuit.Name(), buses=_buses(elements), source=_source(),
        lines=_lines() + series_reactors, transformers=_transformers(), capacitors=_capacitors(),
        loads=_loads(float(dss.Solution.LoadMult())), generators=_generators(unsupported) + ders,
        regulators=opendss_controls.regulators(unsupported), cap_controls=opendss_controls.cap_controls(unsupported),
        base_frequency_hz=float(dss.Solution.Frequency()), controls_on=report.controls_on,
        inv_controls=opendss_der.inv_controls(unsupported, ders, elements), shunts=shunts,
        time_h=float(dss.Solution.DblHour()))
    if unsupported and strict:
        raise UnsupportedElementError(
            f"{len(unsupported)} unsupported element(s): {', '.join(unsupported[:20])}", unsupported)
    report.ignored += unsupported
    return feeder.validate(), report


def load_dss(path: str | Path, strict: bool = True) -> tuple[Feeder, ImportReport]:
    """Compile `path` in OpenDSS and convert it (no OpenDSS solve is needed)."""
    compile_dss(path)
    return feeder_from_engine(strict)
