"""`colorgrid powerflow [FEEDER.dss]`: three-phase unbalanced power flow of an OpenDSS feeder.

Compiles the file in the OpenDSS engine (only to read it), converts it to colorgrid's model and
solves it with colorgrid's implicit-Zbus solver; regulator and capacitor controls act unless the
file ends with `set controlmode=off`. Without a file, the shipped IEEE 13-node feeder is used.
Branch currents are checked against the feeder's ampere ratings and bus·phase voltages against
the voltage limits (the file's normvminpu/normvmaxpu, 0.95–1.05 pu by default, or --v-min-pu/--v-max-pu).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from colorgrid.results import RunOutput, add_out_argument

HELP = "three-phase unbalanced power flow of an OpenDSS feeder (voltage profile, flows, losses)"


def add_arguments(parser) -> None:
    parser.add_argument("feeder_file", nargs="?", metavar="FEEDER.dss", default=None,
                        help="OpenDSS master file (default: the shipped feeder named by --feeder)")
    parser.add_argument("--feeder", default="ieee13", help="shipped feeder to use when no file is given")
    parser.add_argument("--plot", action="store_true",
                        help="write voltage_profile.png (into --out, else the current folder)")
    parser.add_argument("--tol-pu", type=float, default=1e-9, help="convergence tolerance, max |dV| in pu")
    parser.add_argument("--max-iter", type=int, default=200, help="fixed-point iteration limit")
    parser.add_argument("--v-min-pu", type=float, default=None,
                        help="lower voltage limit for every bus (default: the file's normvminpu, 0.95)")
    parser.add_argument("--v-max-pu", type=float, default=None,
                        help="upper voltage limit for every bus (default: the file's normvmaxpu, 1.05)")
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
        path = Path(args.feeder_file)
        if not path.is_file():
            raise FileNotFoundError(f"feeder file not found: {path}")
        return path
    from market.network.data import feeder_path

    return feeder_path(args.feeder)


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
        res = solve_with_controls(feeder, tol_pu=tol_pu, max_iter=max_iter)
    else:
        res = solve(net, tol_pu, max_iter)
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


def _plot(feeder, res, path: Path, limits_pu: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from market.network.profile import bus_distance_ohm

    dist = bus_distance_ohm(feeder)
    net = res.network
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for ph, color in ((1, "tab:red"), (2, "tab:green"), (3, "tab:blue")):
        pts = [(dist[b], res.v_pu[i]) for i, (b, k) in enumerate(net.nodes)
               if k == ph and feeder.buses[b].kv_base_ln > 0 and np.isfinite(dist[b])]
        if pts:
            x, y = zip(*sorted(pts))
            ax.scatter(x, y, s=10, color=color, label=f"phase {ph}")
    for lim in limits_pu:
        ax.axhline(lim, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("electrical distance from source (ohm, series resistance)")
    ax.set_ylabel("voltage magnitude (pu)")
    ax.set_title(f"{feeder.name}: per-phase voltage profile")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    import sys

    from market.network.errors import NetworkError

    try:
        path = _resolve(args)
        feeder, report, res, build_ms, solve_ms = _solve(path, args.tol_pu, args.max_iter, args.v_min_pu,
                                                         args.v_max_pu)
    except (NetworkError, FileNotFoundError, KeyError) as exc:
        print(f"colorgrid powerflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
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
    losses = res.losses_va() / 1000.0
    print(f"feeder {feeder.name} ({path.name}): {len(feeder.buses)} buses, {net.n} nodes, "
          f"{len(feeder.loads)} loads, {len(feeder.generators)} generators")
    if report.ignored:
        print(f"ignored (measurement only): {', '.join(report.ignored)}")
    out.figure("converged", True)
    out.figure("iterations", res.iterations)
    out.figure("control_iterations", res.control_iterations)
    out.figure("losses_kw", float(losses.real), "kW")
    out.figure("losses_kvar", float(losses.imag), "kvar")
    out.figure("v_min_pu", float(vpu[i_min]), "pu")
    out.figure("v_min_node", snap.locations[i_min])
    out.figure("v_max_pu", float(vpu[i_max]), "pu")
    out.figure("v_max_node", snap.locations[i_max])
    out.figure("n_nodes", net.n)
    out.figure("regulator_taps_pu", {k: float(v) for k, v in sorted(res.taps.items())}, "pu")
    controls = "controls active" if feeder.controls_on else "controls held (controlmode=off)"
    print(f"converged in {res.iterations} iterations ({res.control_iterations} control iterations, {controls}); "
          f"build {build_ms:.1f} ms, solve {solve_ms:.1f} ms")
    print(f"losses {losses.real:.2f} kW, {losses.imag:.2f} kvar; V min {vpu[i_min]:.4f} pu at "
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
