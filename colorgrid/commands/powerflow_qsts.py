"""`colorgrid powerflow FEEDER.dss --mode daily|yearly`: the time-series run and its files.

Not a command of its own: `powerflow.run` hands over here when --mode is given. Files (with
--out): timeseries.csv (per step: step, time_s, v_min_pu, v_max_pu, the nodes where they occur,
violations, losses_kw, load_kw, der_kw, der_kvar, then |V| pu of each watched node `v_<location>_pu`),
taps.csv (per step, each regulator's tap position from neutral and its tap in pu), summary.json
(steps, tap operations, capacitor switchings, hours outside the limits per bus, energy losses kWh)
and two PNGs: voltage_envelope.png and taps.png.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run_qsts_command(args, path: Path, where: str) -> int:
    from market.network.errors import NetworkError
    from market.network.locations import UnknownLocationError
    from market.network.timeseries import DEFAULT_STEP_S, run_qsts

    from colorgrid.args import error
    from colorgrid.commands.powerflow import _PowerflowOutput

    watch = [w.strip() for w in args.watch.split(",") if w.strip()] if args.watch else None
    step_s = DEFAULT_STEP_S if args.step_s is None else args.step_s
    try:
        res = run_qsts(path, args.mode, args.steps, step_s, watch, args.v_min_pu, args.v_max_pu,
                       args.tol_pu, args.max_iter)
    except UnknownLocationError as exc:
        return error("colorgrid powerflow", f"argument --watch: {exc}")
    except NetworkError as exc:
        return error("colorgrid powerflow", f"{where}: {type(exc).__name__}: {exc}")
    lo, hi = res.v_limits_pu
    out = _PowerflowOutput(args.out, "powerflow", {"feeder": path.name, "mode": res.mode, "steps": res.steps,
                                                  "step_s": res.step_s, "tol_pu": args.tol_pu,
                                                  "v_min_limit_pu": lo, "v_max_limit_pu": hi})
    s = res.summary()
    units = {"energy_losses_kwh": "kWh", "energy_load_kwh": "kWh", "energy_der_kwh": "kWh", "v_min_pu": "pu",
             "v_max_pu": "pu", "step_s": "s", "duration_h": "h", "hours_outside_limits_by_bus": "h"}
    out.figures_from(s, units)
    print(f"feeder {res.feeder} ({path.name}): {res.mode} time series, {res.steps} steps of {res.step_s:g} s "
          f"({s['duration_h']:g} h), controls acting between steps")
    print(f"V {s['v_min_pu']:.4f}–{s['v_max_pu']:.4f} pu over the run; {s['steps_with_violations']} steps with "
          f"nodes outside {lo:g}–{hi:g} pu, {s['buses_outside_limits']} buses outside at some step")
    print(f"tap operations {s['tap_operations']}, capacitor switchings {s['capacitor_switchings']}; "
          f"energy: losses {s['energy_losses_kwh']:.2f} kWh, load {s['energy_load_kwh']:.1f} kWh, "
          f"DER {s['energy_der_kwh']:.1f} kWh")
    worst = sorted(s["hours_outside_limits_by_bus"].items(), key=lambda kv: -kv[1])[:5]
    if worst:
        print("most hours outside limits: " + ", ".join(f"{b} {h:g} h" for b, h in worst))
    if out.enabled:
        _write(out, res)
        for name, fig in (("voltage_envelope.png", envelope_figure(res)), ("taps.png", taps_figure(res))):
            fig.savefig(out.path(name), dpi=110)
            import matplotlib.pyplot as plt

            plt.close(fig)
    out.finish()
    if out.enabled:
        print(f"results written to {out.out_dir}")
    return 0


def _write(out, res) -> None:
    cols = ["step", "time_s", "v_min_pu", "v_min_location", "v_max_pu", "v_max_location", "violations",
            "losses_kw", "load_kw", "der_kw", "der_kvar"] + [f"v_{w}_pu" for w in res.watched]
    rows = []
    for k in range(res.steps):
        rows.append([k + 1, float(res.time_s[k]), float(res.v_min_pu[k]), res.v_min_location[k],
                     float(res.v_max_pu[k]), res.v_max_location[k], int(res.violations[k]),
                     float(res.losses_kw[k]), float(res.load_kw[k]), float(res.der_kw[k]), float(res.der_kvar[k])]
                    + [float(x) for x in res.v_watched_pu[k]])
    out.write_csv("timeseries.csv", cols, rows)
    tcols = ["step", "time_s"] + [f"{r}_tap" for r in res.regulators] + [f"{r}_tap_pu" for r in res.regulators]
    tcols += [f"{c}_closed_steps" for c in res.capacitors]
    out.write_csv("taps.csv", tcols, [[k + 1, float(res.time_s[k])] + [int(x) for x in res.tap_steps[k]]
                                      + [float(x) for x in res.taps_pu[k]] + [int(x) for x in res.cap_states[k]]
                                      for k in range(res.steps)])


def _axes(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.set_title(title)
    return fig, ax


def envelope_figure(res):
    """Lowest and highest phase-node voltage per step (shaded between), limits dashed."""
    fig, ax = _axes(f"{res.feeder}: voltage envelope, {res.mode} time series")
    hours = res.time_s / 3600.0
    ax.fill_between(hours, res.v_min_pu, res.v_max_pu, color="tab:blue", alpha=0.2, label="all phase nodes")
    ax.plot(hours, res.v_min_pu, color="tab:blue", lw=1, label="lowest node")
    ax.plot(hours, res.v_max_pu, color="tab:red", lw=1, label="highest node")
    lo, hi = res.v_limits_pu
    ax.axhline(lo, color="grey", ls="--", lw=0.8, label=f"limits {lo:g} / {hi:g} pu")
    ax.axhline(hi, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("voltage magnitude (pu)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def taps_figure(res):
    """Each regulator's tap position (steps from neutral) per step."""
    fig, ax = _axes(f"{res.feeder}: regulator taps, {res.mode} time series")
    hours = res.time_s / 3600.0
    for j, name in enumerate(res.regulators):
        ax.step(hours, res.tap_steps[:, j], where="post", lw=1, label=name)
    if not res.regulators:
        ax.text(0.5, 0.5, "no regulators in this feeder", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("tap position (steps from neutral)")
    if res.regulators:
        ax.legend(loc="best", fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def check_flags(args) -> str | None:
    """The one-line error for time-series flags given without --mode (None if fine)."""
    if args.mode is None:
        for flag, value in (("--steps", args.steps), ("--step-s", args.step_s), ("--watch", args.watch)):
            if value is not None:
                return f"argument {flag}: needs --mode daily or --mode yearly"
    return None
