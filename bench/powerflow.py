"""Power-flow bench: colorgrid's implicit-Zbus solver vs OpenDSS's `solve`, same feeder, same process.

For IEEE 123 and the largest shared feeder (IEEE 8500), after OpenDSS has settled its controls
and they are frozen (`set controlmode=off`):
- cold: OpenDSS's first solve after compile (it builds its Y) vs colorgrid build+factorize and a
  solve from the no-load start; and a file as a user hands it in: OpenDSS compile + solve vs
  colorgrid compile (the engine reads the file) + import + build + first solve (interleaved pairs);
- re-solve with new loads (what the market does every interval): every repetition scales all
  loads by a fresh random factor in [0.8, 1.2] and solves from the previous solution (warm start)
  in both tools (OpenDSS: `Solution.LoadMult`; colorgrid: new injection atoms, same
  factorization, resuming its previous iterate with chord steps); setting the loads is untimed in
  both. The first warm re-solve (which builds colorgrid's dense reduction and chord Jacobian) is
  reported apart, and the previous algorithm (plain node-space iteration, `method="plain"`) is
  timed on the same loads from the same starts, in a loop of its own afterwards (so that neither
  solver's memory traffic lands inside the other's timing), as the before figure;
- the same re-solves from the flat (no-load) start in both tools (OpenDSS: `calcvoltagebases`,
  untimed, then `Solve`; colorgrid: no v0 — after the first warm re-solve it takes chord steps
  from V_s too);
- sensitivities (PTDF for every line·phase, dV/dP and dV/dQ for every bus·phase, loss factors)
  on IEEE 123;
- the accuracy table of docs/powerflow.md: max |ΔV| and loss error vs OpenDSS for every shared
  feeder (taps frozen as OpenDSS settled them), and losses vs the README's published figure.
- QSTS on IEEE 123 with PV and volt-var (market.network.qsts_case): 96 daily 15-min steps and
  8760 yearly 1-h steps, colorgrid's run_qsts vs OpenDSS's own daily/yearly mode on the same file
  (both whole runs: compile to last step), then every step checked against OpenDSS (max |dV|,
  tap positions, tap operations).
Ratios are colorgrid / OpenDSS. `python -m bench.powerflow [--reps N] [--qsts-yearly-steps N] [--json PATH]`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench._report import Report
from market.network.errors import PowerFlowNotConverged
from market.network.opendss_import import compile_dss, feeder_from_engine
from market.network.reference import compare, freeze_controls, solve_opendss
from market.network.sensitivity import SensitivityModel
from market.network.solver import solve
from market.network.ybus import build_network

FEEDERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "feeders"
CASES = {"ieee123": "ieee123/IEEE123Master.dss", "ieee8500": "ieee8500/Master.dss"}
# every shared feeder -> README reference losses (kW, OpenDSS with controls active)
VALIDATION = {
    "ieee13": ("ieee13/IEEE13Nodeckt.dss", 112.39), "ieee34_mod1": ("ieee34/ieee34Mod1.dss", 273.51),
    "ieee34_mod2": ("ieee34/ieee34Mod2.dss", 273.55), "ieee37": ("ieee37/ieee37.dss", 152.34),
    "ieee123": ("ieee123/IEEE123Master.dss", 95.98), "ieee8500": ("ieee8500/Master.dss", 1210.34),
    "ieee8500_unbal": ("ieee8500/Master-unbal.dss", 1274.48), "lv390": ("lv-network-390/Master.dss", 549.77),
    "4bus_dy": ("ieee4/4bus-dy-bal/4Bus-DY-Bal.DSS", 569.01),
    "4bus_grdyd": ("ieee4/4bus-grdyd-bal/4Bus-GrdYD-Bal.DSS", 567.69),
    "4bus_oyod_bal": ("ieee4/4bus-oyod-bal/4Bus-OYOD-Bal.DSS", 324.78),
    "4bus_oyod_unbal": ("ieee4/4bus-oyod-unbal/4bus-OYOD-UnBal.dss", 387.77),
    "4bus_yd": ("ieee4/4bus-yd-bal/4Bus-YD-Bal.DSS", 567.69), "4bus_yy": ("ieee4/4bus-yy-bal/4Bus-YY-Bal.DSS", 569.21),
}


def bench_validation(rep: Report) -> None:
    """Accuracy table: colorgrid vs OpenDSS (same taps) and vs the README's published losses."""
    for name, (path, readme_kw) in VALIDATION.items():
        compile_dss(FEEDERS / path)
        solve_opendss(controls=True)
        freeze_controls()
        ref = solve_opendss(controls=False)
        feeder, _ = feeder_from_engine()
        res = solve(build_network(feeder))
        dv, loss_err = compare(ref, res)
        loss_kw = res.losses_va().real / 1000.0
        rep.figure(f"val_{name}_max_dv_pu", dv, "pu", target="<= 1e-3", note=f"{res.network.n} nodes")
        rep.figure(f"val_{name}_loss_err_pct", 100.0 * loss_err, "%", target="<= 0.5")
        rep.figure(f"val_{name}_loss_vs_readme_pct", 100.0 * (loss_kw - readme_kw) / readme_kw, "%",
                   note=f"{loss_kw:.2f} kW vs {readme_kw} kW")


def bench_case(rep: Report, name: str, path: Path, reps: int) -> None:
    import opendssdirect as dss

    compile_dss(path)
    solve_opendss(controls=True)
    freeze_controls()
    feeder, _ = feeder_from_engine()
    # --- cold -----------------------------------------------------------------------------
    compile_dss(path)
    dss.Text.Command("set maxiterations=100")
    solve_opendss(controls=True)
    freeze_controls()
    dss.Text.Command("set tolerance=1e-6")
    first = dss.Lines.AllNames()[0]
    t0 = time.perf_counter()
    dss.Lines.Name(first)
    dss.Lines.Length(dss.Lines.Length())  # an edit: OpenDSS must rebuild its system Y
    dss.Text.Command("calcvoltagebases")  # back to a no-load start
    dss.Solution.Solve()
    dss_cold_ms = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    net = build_network(feeder)
    build_ms = (time.perf_counter() - t0) * 1000.0
    base = solve(net, tol_pu=1e-6 * 1.0)
    cold_ms = build_ms + base.solve_ms
    rep.figure(f"{name}_nodes", net.n)
    rep.figure(f"{name}_build_factorize_ms", build_ms, "ms", note="once per topology/taps")
    rep.figure(f"{name}_cold_solve_ms", base.solve_ms, "ms", note=f"{base.iterations} iterations")
    rep.figure(f"{name}_opendss_cold_solve_ms", dss_cold_ms, "ms", note="Y rebuild + no-load start")
    rep.ratio(f"{name}_cold_ratio_colorgrid_over_opendss", cold_ms, dss_cold_ms, note="build+solve vs solve")
    bench_cold_file(rep, name, path)
    # --- re-solve with new loads, warm (from the previous solution, both tools) ----------------
    # colorgrid's default (solve(..., v0=previous.v)): it resumes its previous iterate and takes
    # chord steps (market/network/chord.py); the first warm re-solve also builds that machinery
    # (dense reduction on small feeders, chord Jacobian) and is reported on its own. The plain
    # node-space iteration (the previous algorithm, method="plain") runs on the same loads from the
    # same starts in a loop of its own as the before figure.
    rng = np.random.default_rng(7)
    factors = rng.uniform(0.8, 1.2, reps + 1)
    dss_ms, our_ms, iters, starts = [], [], [], []
    v = base.v
    first_ms = first_it = None
    for k in factors:
        dss.Solution.LoadMult(float(k))  # setting the loads is untimed in both tools
        atoms = base.atoms.scaled(float(k))
        t0 = time.perf_counter()
        dss.Solution.Solve()
        d_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        res = solve(net, tol_pu=1e-6, atoms=atoms, v0=v)
        o_ms = (time.perf_counter() - t0) * 1000.0
        starts.append((atoms, v))
        v = res.v
        if first_ms is None:
            first_ms, first_it = o_ms, res.iterations
            continue
        dss_ms.append(d_ms)
        our_ms.append(o_ms)
        iters.append(res.iterations)
    plain_ms, plain_iters = [], []  # before: the same loads from the same starts, in a loop of its own
    for atoms, v_start in starts[1:]:
        t0 = time.perf_counter()
        plain = solve(net, tol_pu=1e-6, atoms=atoms, v0=v_start, method="plain")
        plain_ms.append((time.perf_counter() - t0) * 1000.0)
        plain_iters.append(plain.iterations)
    d, o, p = float(np.median(dss_ms)), float(np.median(our_ms)), float(np.median(plain_ms))
    rep.figure(f"{name}_opendss_resolve_ms", d, "ms", note=f"median of {reps}, new LoadMult each, warm")
    rep.figure(f"{name}_resolve_ms", o, "ms",
               note=f"median of {reps}, warm (previous iterate), {np.median(iters):.0f} iterations")
    rep.ratio(f"{name}_resolve_ratio_colorgrid_over_opendss", o, d, target="<= 1.5")
    rep.figure(f"{name}_resolve_plain_ms", p, "ms",
               note=f"before: plain node-space iteration, same loads/start, {np.median(plain_iters):.0f} iterations")
    rep.ratio(f"{name}_resolve_plain_ratio_colorgrid_over_opendss", p, d)
    rep.figure(f"{name}_first_resolve_ms", first_ms, "ms",
               note=f"first warm re-solve: builds the reduction/chord Jacobian, {first_it} iterations")
    rep.ratio(f"{name}_build_over_resolve", build_ms, o, note="factorize once, re-solve many")
    # --- re-solve with new loads from the flat (no-load) start, both tools ------------------------
    dss_ms, our_ms, iters = [], [], []
    for k in factors[:reps]:
        dss.Solution.LoadMult(1.0)
        dss.Text.Command("calcvoltagebases")  # OpenDSS back to its no-load voltages (untimed)
        dss.Solution.LoadMult(float(k))
        atoms = base.atoms.scaled(float(k))
        t0 = time.perf_counter()
        dss.Solution.Solve()
        dss_ms.append((time.perf_counter() - t0) * 1000.0)
        t0 = time.perf_counter()
        res = solve(net, tol_pu=1e-6, atoms=atoms)
        our_ms.append((time.perf_counter() - t0) * 1000.0)
        iters.append(res.iterations)
    d, o = float(np.median(dss_ms)), float(np.median(our_ms))
    rep.figure(f"{name}_opendss_resolve_flat_ms", d, "ms", note=f"median of {reps}, from no-load voltages")
    rep.figure(f"{name}_resolve_flat_ms", o, "ms",
               note=f"median of {reps}, flat start, same factorization, {np.median(iters):.0f} iterations")
    rep.ratio(f"{name}_resolve_flat_ratio_colorgrid_over_opendss", o, d)


def bench_cold_file(rep: Report, name: str, path: Path, reps: int = 3) -> None:
    """A file a user hands in: OpenDSS compile + solve vs colorgrid's compile (the same engine
    reads the file) + import + build + first solve; median ratio of `reps` interleaved pairs.
    Leaves the engine as bench_case's re-solves expect it: controls settled, then frozen (before,
    they ran on a freshly compiled circuit with OpenDSS's controls active)."""
    import opendssdirect as dss

    pairs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        compile_dss(path)
        dss.Solution.Solve()
        d_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        compile_dss(path)
        feeder, _ = feeder_from_engine()
        net = build_network(feeder)
        solve(net, atoms=net.atoms)  # the loads/DER as compiled by the build
        pairs.append(((time.perf_counter() - t0) * 1000.0, d_ms))
    compile_dss(path)  # back to the state the re-solves expect: controls settled in OpenDSS, then frozen
    dss.Text.Command("set maxiterations=100")
    solve_opendss(controls=True)
    freeze_controls()
    dss.Text.Command("set tolerance=1e-6")
    ours, theirs = sorted(pairs, key=lambda p: p[0] / p[1])[len(pairs) // 2]
    rep.figure(f"{name}_cold_file_ms", ours, "ms", note="compile + import + build + first solve")
    rep.figure(f"{name}_opendss_compile_solve_ms", theirs, "ms", note="compile + solve")
    rep.ratio(f"{name}_cold_file_ratio_colorgrid_over_opendss", ours, theirs, target="<= 2",
              note=f"median of {reps} interleaved pairs")


def bench_qsts(rep: Report, mode: str, steps: int, step_s: float) -> None:
    """QSTS on IEEE 123 with PV and volt-var (market.network.qsts_case), the whole run as a user
    does it: colorgrid's run_qsts (compile, import, build, every step with its control loop) vs
    OpenDSS's own time-series mode on the same file (compile, `set mode=<mode> stepsize=… number=N`,
    one `solve`), same tolerance 1e-9; then every step checked against OpenDSS stepping one
    `solve` at a time (untimed): max |dV|, steps whose tap positions differ, tap operations."""
    import tempfile

    import opendssdirect as dss

    from market.network.qsts_case import write_pv_case
    from market.network.reference import solve_opendss_qsts, tap_operations_logged
    from market.network.timeseries import run_qsts

    with tempfile.TemporaryDirectory() as tmp:
        path = write_pv_case(tmp, FEEDERS / CASES["ieee123"], mode)
        t0 = time.perf_counter()
        compile_dss(path)
        dss.Text.Command("set maxiterations=100 maxcontroliter=1000 tolerance=1e-9")
        dss.Text.Command(f"set mode={mode} stepsize={step_s}s number={steps}")
        dss.Solution.Solve()
        dss_ms = (time.perf_counter() - t0) * 1000.0
        volts = []
        t0 = time.perf_counter()
        try:
            res = run_qsts(path, mode, steps=steps, step_s=step_s, max_control_iter=1000,  # as OpenDSS here
                           on_step=lambda k, t, r: volts.append(r.v.copy()))
        except PowerFlowNotConverged as exc:  # named in the report, the other figures kept
            rep.figure(f"qsts_{mode}_failed_at_step", len(volts) + 1, note=f"of {steps}: {exc}")
            rep.figure(f"qsts_{mode}_ms_until_failure", (time.perf_counter() - t0) * 1000.0, "ms",
                       note=f"OpenDSS's whole {steps}-step run: {dss_ms:.0f} ms")
            return
        ours_ms = (time.perf_counter() - t0) * 1000.0
        net = res.last.network
        compile_dss(path)
        dv, differ = 0.0, 0
        for k, (ref, taps) in enumerate(solve_opendss_qsts(mode, steps, step_s, res.regulators)):
            keys = list(ref.v)
            idx = np.array([net.index[key] for key in keys])
            got = volts[k][idx]
            dv = max(dv, float(np.max(np.abs(got - np.array([ref.v[key] for key in keys])) / net.vbase_v[idx])))
            differ += int(np.any(np.array(taps) != res.tap_steps[k]))
        dss_taps = tap_operations_logged()
    tag = f"qsts_{mode}"
    rep.figure(f"{tag}_steps", steps, note=f"IEEE 123 + 2 PV + volt-var, {step_s:.0f}-s steps")
    rep.figure(f"{tag}_ms", ours_ms, "ms", note=f"run_qsts: compile+import+build+steps, "
                                                 f"{int(res.control_iterations.sum())} control iterations")
    rep.figure(f"{tag}_opendss_ms", dss_ms, "ms", note=f"compile + solve mode={mode} number={steps}")
    rep.ratio(f"{tag}_ratio_colorgrid_over_opendss", ours_ms, dss_ms, target="<= 1.0" if mode == "yearly" else None)
    rep.figure(f"{tag}_max_dv_pu", dv, "pu", target="<= 1e-4", note="worst step, every bus·node")
    rep.figure(f"{tag}_steps_taps_differ", differ, target="0")
    rep.figure(f"{tag}_tap_operations", int(res.summary()["tap_operations"]), note=f"OpenDSS event log: {dss_taps}")


def bench_sensitivities(rep: Report) -> None:
    compile_dss(FEEDERS / CASES["ieee123"])
    solve_opendss(controls=True)
    freeze_controls()
    feeder, _ = feeder_from_engine()
    res = solve(build_network(feeder))
    t0 = time.perf_counter()
    sens = SensitivityModel(res).compute()
    ms = (time.perf_counter() - t0) * 1000.0
    rep.figure("ieee123_sensitivities_ms", ms, "ms", target="< 1000",
               note=f"PTDF {sens.ptdf.shape[0]}x{sens.ptdf.shape[1]}, dV {sens.dv_dp.shape[0]}x{sens.dv_dp.shape[1]}, "
                    "dV/dQ, loss factors")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.powerflow")
    parser.add_argument("--reps", type=int, default=20, help="re-solves per feeder")
    parser.add_argument("--cases", default="ieee123,ieee8500", help="comma-separated: " + ",".join(CASES))
    parser.add_argument("--no-validation", action="store_true", help="skip the accuracy table")
    parser.add_argument("--qsts-daily-steps", type=int, default=96, help="15-min daily QSTS steps (0: skip)")
    parser.add_argument("--qsts-yearly-steps", type=int, default=8760, help="1-h yearly QSTS steps (0: skip)")
    rep = Report("powerflow", argv, parser)
    if not rep.args.no_validation:
        bench_validation(rep)
    for name in rep.args.cases.split(","):
        bench_case(rep, name, FEEDERS / CASES[name], rep.args.reps)
    bench_sensitivities(rep)
    if rep.args.qsts_daily_steps > 0:
        bench_qsts(rep, "daily", rep.args.qsts_daily_steps, 900.0)
    if rep.args.qsts_yearly_steps > 0:
        bench_qsts(rep, "yearly", rep.args.qsts_yearly_steps, 3600.0)
    rep.done()


if __name__ == "__main__":
    main()
