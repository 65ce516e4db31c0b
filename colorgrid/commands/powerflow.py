"""`colorgrid powerflow [FEEDER.dss]`: three-phase unbalanced power flow of an OpenDSS feeder.

Compiles the file in the OpenDSS engine (only to read it), converts it to colorgrid's model and
solves it with colorgrid's implicit-Zbus solver; regulator and capacitor controls act unless the
file ends with `set controlmode=off`. Without a file, the shipped IEEE 13-node feeder is used.
Branch currents are checked against the feeder's ampere ratings and bus·phase voltages against
the voltage limits (the file's normvminpu/normvmaxpu, 0.95–1.05 pu by default, or --v-min-pu/--v-max-pu).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from colorgrid.results import RunOutput, add_out_argument

HELP = "three-phase unbalanced power flow of an OpenDSS feeder (voltage profile, flows, losses)"


# a solved feeder whose voltages are this far outside the limits is not a plausible operating
# point (overloaded or mis-specified feeder): the command warns and summary.json says so
FAR_OUTSIDE_PU = 0.1


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, positive_float
    from market.network.data import FEEDERS

    parser.add_argument("feeder_file", nargs="?", metavar="FEEDER.dss", type=existing_file, default=None,
                        help="OpenDSS master file (default: the shipped feeder named by --feeder)")
    parser.add_argument("--feeder", default="ieee13", choices=sorted(FEEDERS),
                        help=f"shipped feeder to use when no file is given: {', '.join(sorted(FEEDERS))} "
                             "(default ieee13)")
    parser.add_argument("--plot", action="store_true",
                        help="write voltage_profile.png (into --out, else the current folder)")
    parser.add_argument("--tol-pu", type=positive_float, default=1e-9,
                        help="convergence tolerance, max |dV| in pu (> 0; default 1e-9)")
    parser.add_argument("--max-iter", type=count, default=200, help="fixed-point iteration limit (>= 1; default 200)")
    parser.add_argument("--v-min-pu", type=positive_float, default=None,
                        help="lower voltage limit for every bus (default: the file's normvminpu, 0.95)")
    parser.add_argument("--v-max-pu", type=positive_float, default=None,
                        help="upper voltage limit for every bus (default: the file's normvmaxpu, 1.05)")
    parser.add_argument("--mode", choices=("daily", "yearly"), default=None,
                        help="quasi-static time series following the feeder's daily= or yearly= load and PV "
                             "shapes, controls acting between steps (default: one snapshot)")
    parser.add_argument("--steps", type=count, default=None,
                        help="time steps with --mode (>= 1; default 24 daily, 8760 yearly, as OpenDSS)")
    parser.add_argument("--step-s", type=positive_float, default=None,
                        help="step length in seconds with --mode (> 0; default 3600)")
    parser.add_argument("--watch", default=None, metavar="LOC[,LOC...]",
                        help="with --mode: bus·phase ids whose |V| goes into timeseries.csv "
                             "(default: the DER nodes and the lowest node)")
    add_out_argument(parser)


class _PowerflowOutput(RunOutput):
    """Timings vary run to run, so they live in the `wall` block of summary.json."""

    timings: dict[str, float] = {}

    def summary(self, wall_time_s=None):
        data = super().summary(wall_time_s)
        data["wall"].update({k: round(v, 3) for k, v in self.timings.items()})
        return data


def _resolve(args) -> Path:
    if args.feeder_file:
        return Path(args.feeder_file)  # checked by argparse: an existing, non-empty file
    from market.network.data import feeder_path

    return feeder_path(args.feeder)  # --feeder is one of the shipped names (argparse choices)


def _is_shunt(blk) -> bool:
    """A shunt element: a capacitor, or an element whose terminal 2 is all ground (a shunt reactor)."""
    return blk.kind == "capacitor" or not bool(np.any(np.asarray(blk.index[blk.n_terminal1:]) >= 0))


def split_losses_va(res) -> tuple[complex, complex]:
    """(series losses, shunt power) in VA.

    Series losses = Σ complex power into every line, transformer and series reactor (the I²R and
    I²X of the delivery path); this is OpenDSS's `Circuit.Losses`, which skips shunt elements.
    Shunt power = Σ complex power into capacitors and shunt reactors (a capacitor bank's output
    is negative reactive power). Their sum is the power the source delivers minus the loads'."""
    pw = res.element_powers_va()
    series = shunt = 0j
    r0 = 0
    for blk in res.network.blocks:
        total = complex(pw[r0:r0 + len(blk.index)].sum())
        r0 += len(blk.index)
        if _is_shunt(blk):
            shunt += total
        else:
            series += total
    return series, shunt


def _solve(path: Path, tol_pu: float, max_iter: int, v_min_pu: float | None, v_max_pu: float | None):
    from market.network.controls import regulator_taps, solve_with_controls
    from market.network.opendss_import import load_dss
    from market.network.solver import solve
    from market.network.ybus import build_network

    feeder, report = load_dss(path)
    feeder.set_voltage_limits(v_min_pu, v_max_pu)
    t0 = time.perf_counter()
    net = build_network(feeder)
    build_ms = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    if feeder.controls_on and (feeder.regulators or feeder.cap_controls):
        res = solve_with_controls(feeder, tol_pu=tol_pu, max_iter=max_iter, net=net)
    else:
        res = solve(net, tol_pu, max_iter, atoms=net.atoms)
    res.taps = regulator_taps(feeder)
    solve_ms = (time.perf_counter() - t0) * 1000.0
    return feeder, report, res, build_ms, solve_ms


def _snapshot(feeder, res):
    from market.network.limits import build_branch_index, node_limits
    from market.network.snapshot import snapshot_from_result

    return snapshot_from_result(res, build_branch_index(res.network), node_limits(feeder, res.network.nodes))


def _limit_figures(out, snap, v_min_pu: float, v_max_pu: float) -> None:
    over = snap.overloaded_branches()
    over_emerg = snap.overloaded_branches(emergency=True)
    viol = snap.voltage_violations()
    out.figure("n_overloaded_branches", len(over))
    out.figure("n_overloaded_branches_emerg", len(over_emerg))
    out.figure("n_voltage_violations", len(viol))
    out.figure("n_undervoltage_nodes", sum(v.side == "under" for v in viol))
    out.figure("n_overvoltage_nodes", sum(v.side == "over" for v in viol))
    rated = np.nonzero(snap.rated)[0]
    if len(rated):
        worst = int(rated[np.argmax(snap.loading_pct[rated])])
        out.figure("max_loading_pct", float(snap.loading_pct[worst]), "%")
        out.figure("max_loading_branch", snap.branch_ids[worst])
    print(f"limits: {len(over)} branch rows above normal rating ({len(over_emerg)} above emergency), "
          f"{len(viol)} bus·phase nodes outside {v_min_pu:g}–{v_max_pu:g} pu")
    if over:
        print("most loaded: " + ", ".join(f"{o.branch_id} {o.loading_pct:.1f} %" for o in over[:5]))
    out.figure("violations", violations_summary(snap, viol, over, over_emerg))
    far = out.figures["violations"]["far_outside_limits"]
    if far:
        worst = min(viol, key=lambda v: min(v.v_pu - v.v_min_pu, v.v_max_pu - v.v_pu))
        print(f"colorgrid powerflow: warning: voltages far outside the limits (V {worst.v_pu:.3f} pu at "
              f"{worst.location}, limits {worst.v_min_pu:g}–{worst.v_max_pu:g} pu): the solution is not a "
              f"feasible operating point; check loads and ratings", file=sys.stderr)


def violations_summary(snap, viol, over, over_emerg) -> dict:
    """The `violations` figure: counts, the worst node each side, and whether any node is more
    than FAR_OUTSIDE_PU outside its limits (an implausible operating point: a warning is printed)."""
    under = [v for v in viol if v.side == "under"]
    over_v = [v for v in viol if v.side == "over"]

    def worst(rows, key):
        if not rows:
            return None
        v = min(rows, key=key)
        return {"location": v.location, "v_pu": float(v.v_pu)}

    far = any(v.v_pu < v.v_min_pu - FAR_OUTSIDE_PU or v.v_pu > v.v_max_pu + FAR_OUTSIDE_PU for v in viol)
    return {"voltage_nodes": len(viol), "undervoltage_nodes": len(under), "overvoltage_nodes": len(over_v),
            "overloaded_branches": len(over), "overloaded_branches_emerg": len(over_emerg),
            "worst_undervoltage": worst(under, lambda v: v.v_pu), "worst_overvoltage": worst(over_v, lambda v: -v.v_pu),
            "far_outside_limits": far, "far_outside_margin_pu": FAR_OUTSIDE_PU}


def _branch_rows(snap):
    def pct(value, rated):
        return float(value) if rated else ""

    return [(b, e, k, float(snap.i_amps[i]), float(snap.i_to_amps[i]), float(snap.line_p_kw[i]),
             float(snap.line_q_kvar[i]), float(snap.norm_amps[i]), float(snap.emerg_amps[i]),
             pct(snap.loading_pct[i], snap.rated[i]), pct(snap.emerg_loading_pct[i], snap.emerg_rated[i]))
            for i, (b, (e, k)) in enumerate(zip(snap.branch_ids, snap.lines))]


BRANCH_COLUMNS = ["branch_id", "element", "phase", "i_amps", "i_to_amps", "p_kw", "q_kvar", "norm_amps",
                  "emerg_amps", "loading_pct", "emerg_loading_pct"]


def _print_profile(feeder, res) -> None:
    net = res.network
    vpu = res.v_pu
    print(f"{'phase':>5} {'nodes':>6} {'v_min_pu':>9} {'v_mean_pu':>10} {'v_max_pu':>9}  lowest node")
    for ph in (1, 2, 3):
        idx = [i for i, (b, k) in enumerate(net.nodes) if k == ph and feeder.buses[b].kv_base_ln > 0]
        if not idx:
            continue
        v = vpu[idx]
        low = net.nodes[idx[int(np.argmin(v))]]
        print(f"{ph:>5} {len(idx):>6} {v.min():>9.4f} {v.mean():>10.4f} {v.max():>9.4f}  {low[0]}.{low[1]}")


def profile_segments(feeder, res) -> dict[int, list[tuple[tuple[float, float], tuple[float, float]]]]:
    """Per phase, the (distance, |V| pu) end points of every line and transformer that carries
    that phase at both ends: the feeder's branches, drawn as segments between its buses."""
    from market.network.profile import bus_distance_ohm

    dist = bus_distance_ohm(feeder)
    index = res.network.index
    pairs = [(line.bus1, line.bus2) for line in feeder.lines]
    pairs += [(tr.windings[0].bus, wd.bus) for tr in feeder.transformers for wd in tr.windings[1:]]
    segments: dict[int, list] = {1: [], 2: [], 3: []}
    for a, b in pairs:
        if not (np.isfinite(dist[a]) and np.isfinite(dist[b])):
            continue
        if feeder.buses[a].kv_base_ln <= 0 or feeder.buses[b].kv_base_ln <= 0:
            continue
        for ph in segments:
            if (a, ph) in index and (b, ph) in index:
                segments[ph].append(((dist[a], float(res.v_pu[index[(a, ph)]])),
                                     (dist[b], float(res.v_pu[index[(b, ph)]]))))
    return segments


def profile_figure(feeder, res, limits_pu: tuple[float, float]):
    """The voltage-profile figure: per phase, buses as dots joined along the feeder's lines and
    transformers; the voltage limits as labelled dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from market.network.profile import bus_distance_ohm

    dist = bus_distance_ohm(feeder)
    net = res.network
    segments = profile_segments(feeder, res)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for ph, color in ((1, "tab:red"), (2, "tab:green"), (3, "tab:blue")):
        pts = [(dist[b], res.v_pu[i]) for i, (b, k) in enumerate(net.nodes)
               if k == ph and feeder.buses[b].kv_base_ln > 0 and np.isfinite(dist[b])]
        if pts:
            x, y = zip(*sorted(pts))
            ax.scatter(x, y, s=10, color=color, label=f"phase {ph}", zorder=3)
        if segments[ph]:
            ax.add_collection(LineCollection(segments[ph], colors=color, linewidths=0.8, alpha=0.7))
    low, high = limits_pu
    ax.axhline(low, color="grey", lw=0.8, ls="--", label=f"lower voltage limit {low:g} pu")
    ax.axhline(high, color="black", lw=0.8, ls=":", label=f"upper voltage limit {high:g} pu")
    ax.set_xlabel("electrical distance from source (ohm, series resistance)")
    ax.set_ylabel("voltage magnitude (pu)")
    ax.set_title(f"{feeder.name}: per-phase voltage profile (lines join connected buses)")
    ax.legend(loc="best", fontsize="small")
    ax.autoscale_view()
    fig.tight_layout()
    return fig


def _plot(feeder, res, path: Path, limits_pu: tuple[float, float]) -> None:
    import matplotlib.pyplot as plt

    fig = profile_figure(feeder, res, limits_pu)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from market.network.errors import NetworkError

    from colorgrid.args import error

    try:
        from dss import DSSException  # the engine's own error (OpenDSS reading the file)
    except ImportError:  # pragma: no cover - opendssdirect always brings dss
        DSSException = NetworkError
    from colorgrid.commands.powerflow_qsts import check_flags, run_qsts_command

    path = _resolve(args)
    where = f"FEEDER.dss {path}" if args.feeder_file else f"--feeder {args.feeder}"
    bad = check_flags(args)
    if bad:
        return error("colorgrid powerflow", bad)
    if args.mode is not None:
        try:
            return run_qsts_command(args, path, where)
        except DSSException as exc:
            return error("colorgrid powerflow", f"{where}: OpenDSS: {exc}")
    try:
        feeder, report, res, build_ms, solve_ms = _solve(path, args.tol_pu, args.max_iter, args.v_min_pu,
                                                         args.v_max_pu)
    except DSSException as exc:
        text = str(exc)
        if "no active circuit" in text.lower():
            text = "defines no circuit (no `new circuit.NAME` line: is it empty or only comments?)"
        return error("colorgrid powerflow", f"{where}: OpenDSS: {text}")
    except NetworkError as exc:
        return error("colorgrid powerflow", f"{type(exc).__name__}: {exc}")
    snap = _snapshot(feeder, res)
    v_lo, v_hi = float(snap.v_min_pu.min()), float(snap.v_max_pu.max())  # one value for every bus here
    out = _PowerflowOutput(args.out, "powerflow", {"feeder": str(path.name), "tol_pu": args.tol_pu,
                                                  "max_iter": args.max_iter, "controls_on": feeder.controls_on,
                                                  "v_min_limit_pu": v_lo, "v_max_limit_pu": v_hi})
    out.timings = {"build_ms": build_ms, "solve_ms": solve_ms}
    net = res.network
    real = [i for i, (b, _) in enumerate(net.nodes) if feeder.buses[b].kv_base_ln > 0]
    vpu = res.v_pu
    i_min = real[int(np.argmin(vpu[real]))]
    i_max = real[int(np.argmax(vpu[real]))]
    series_va, shunt_va = split_losses_va(res)
    losses, shunt = series_va / 1000.0, shunt_va / 1000.0
    print(f"feeder {feeder.name} ({path.name}): {len(feeder.buses)} buses, {net.n} nodes, "
          f"{len(feeder.loads)} loads, {len(feeder.generators)} generators")
    if report.ignored:
        print(f"ignored (measurement only): {', '.join(report.ignored)}")
    out.figure("converged", True)
    out.figure("iterations", res.iterations)
    out.figure("control_iterations", res.control_iterations)
    out.figure("losses_kw", float(losses.real), "kW")
    out.figure("losses_kvar", float(losses.imag), "kvar")
    out.figure("shunt_kvar", float(shunt.imag), "kvar")
    out.figure("v_min_pu", float(vpu[i_min]), "pu")
    out.figure("v_min_node", snap.locations[i_min])
    out.figure("v_max_pu", float(vpu[i_max]), "pu")
    out.figure("v_max_node", snap.locations[i_max])
    out.figure("n_nodes", net.n)
    out.figure("regulator_taps_pu", {k: float(v) for k, v in sorted(res.taps.items())}, "pu")
    controls = "controls active" if feeder.controls_on else "controls held (controlmode=off)"
    print(f"converged in {res.iterations} iterations ({res.control_iterations} control iterations, {controls}); "
          f"build {build_ms:.1f} ms, solve {solve_ms:.1f} ms")
    print(f"losses {losses.real:.2f} kW, {losses.imag:.2f} kvar (series elements, as OpenDSS Circuit.Losses); "
          f"shunt elements {shunt.imag:.2f} kvar (capacitors negative)")
    print(f"V min {vpu[i_min]:.4f} pu at "
          f"{net.nodes[i_min][0]}.{net.nodes[i_min][1]}, V max {vpu[i_max]:.4f} pu at "
          f"{net.nodes[i_max][0]}.{net.nodes[i_max][1]}")
    if res.taps:
        print("regulator taps (pu): " + ", ".join(f"{k}={v:.5f}" for k, v in sorted(res.taps.items())))
    _limit_figures(out, snap, v_lo, v_hi)
    _print_profile(feeder, res)
    if out.enabled:
        ang = res.angle_deg
        out.write_csv("voltages.csv", ["location", "bus", "phase", "v_pu", "angle_deg", "v_volts"],
                      [(loc, b, k, float(vpu[i]), float(ang[i]), float(abs(res.v[i])))
                       for i, (loc, (b, k)) in enumerate(zip(snap.locations, net.nodes))])
        out.write_csv("branches.csv", BRANCH_COLUMNS, _branch_rows(snap))
    if args.plot or out.enabled:
        png = out.path("voltage_profile.png") if out.enabled else Path("voltage_profile.png")
        _plot(feeder, res, png, (v_lo, v_hi))
        print(f"voltage profile plot: {png}")
    out.finish()
    if out.enabled:
        print(f"results written to {out.out_dir}")
    return 0
