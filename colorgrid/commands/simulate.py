"""`colorgrid simulate`: a closed-loop demand-shaping scenario on the vectorized fleet.

The scenario comes from flags and/or a TOML file (`--config FILE`, same keys as the flags with
dashes or underscores; flags override the file). Prints the metrics; `--out DIR` writes
timeseries.csv, summary.json and simulate.png.
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import asdict, fields
from pathlib import Path

HELP = "closed-loop tiered demand shaping on a vectorized fleet (regulation, step, ramp, fairness)"

# flag -> (type, help); dest = the ScenarioConfig field
FLAGS: dict[str, tuple[type, str]] = {
    "scenario": (str, "regulation | step | ramp | fairness (default regulation)"),
    "devices": (int, "number of devices (default 10000)"),
    "tiers": (int, "number of tiers k; k-1 is black, never disabled (default 3)"),
    "tier-shares": (str, "fraction of each device's kW per tier, comma-separated, sum 1 "
                         "(default black 0.1, the rest equal)"),
    "device-kw": (str, "device size distribution: uniform:LO:HI, lognormal:MEDIAN:SIGMA or a CSV "
                       "of sizes (column p_kw or the last column) (default uniform:1:5)"),
    "load-model": (str, "constant | water_heater | ac | mixed (default constant)"),
    "signal": (str, "regulation signal CSV, one value per line (default: the packaged PJM day)"),
    "start-s": (float, "offset into the signal where scoring starts, s (default 0)"),
    "duration-s": (float, "scored duration, s (default 2400)"),
    "warmup-s": (float, "unscored lead-in, s (default 300)"),
    "base": (float, "base enabled demand, fraction of fleet demand (default 0.5)"),
    "amplitude": (float, "regulation amplitude / step or ramp size, fraction of fleet demand (default 0.15)"),
    "round-s": (float, "round length, s (default 2)"),
    "lag-rounds": (int, "report delivery lag, rounds (default 0 = fresh estimate)"),
    "report-loss": (float, "probability a gateway report is lost (default 0)"),
    "noise-std": (float, "multiplicative measurement noise std on reports (default 0)"),
    "sample-every": (int, "each gateway reports every N rounds (default 1)"),
    "override-fraction": (float, "fraction of devices under customer override (default 0)"),
    "override-duration-s": (float, "mean override duration, s (default 1800)"),
    "devices-per-gateway": (int, "devices per reporting gateway (default 10)"),
    "alpha": (float, "control law: share of the tracking gap switched per round (default 1)"),
    "fairness-horizon-s": (float, "control law: disabled demand rotated once per H s (default 400)"),
    "max-switches-per-device-hour": (float, "control law: cap on the fairness swap (default 10)"),
    "flex-reserve-share": (float, "control law: share of enabled/disabled kW the fairness swap keeps flexible (default 0.5)"),
    "max-age-s": (float, "estimator: carry a report forward at most this long, s (default 10)"),
    "groups": (int, "control groups, one goal each: the gateways split into N contiguous blocks "
                    "(default 1; metrics per group in summary.json, a group column in timeseries.csv)"),
    "group-offset-s": (float, "group g's signal/schedule starts g x this many s later (default 0)"),
    "goal-mode": (str, "now | extrapolate | preview | auto (default auto: extrapolate for "
                       "regulation, preview otherwise)"),
    "seed": (int, "random seed (default 1)"),
}

UNITS = {"_kw": "kW", "_pct": "%", "pct_of_capacity": "%", "pct_of_demand": "%", "_s": "s",
         "per_device_hour": "1/h"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from colorgrid.results import add_out_argument

    from colorgrid.args import existing_file

    parser.add_argument("--config", metavar="FILE", type=existing_file, help="TOML file with the scenario keys")
    for flag, (typ, text) in FLAGS.items():
        parser.add_argument(f"--{flag}", type=existing_file if flag == "signal" else typ, default=None, help=text)
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="also write the goal-vs-achieved plot to this PNG path")
    add_out_argument(parser)


def build_config(args: argparse.Namespace):
    """Defaults < TOML file < flags. Raises ScenarioError naming the key."""
    from firmware_sim.scenario_config import ScenarioConfig, ScenarioError

    cfg = ScenarioConfig()
    if args.config:
        try:
            data = tomllib.loads(Path(args.config).read_text())
        except OSError as exc:
            raise ScenarioError(f"--config {args.config}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"--config {args.config}: not valid TOML: {exc}") from None
        cfg = ScenarioConfig.from_mapping(data, where=f"--config {args.config}")
    names = {f.name for f in fields(ScenarioConfig)}
    given = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in FLAGS}
    cfg = cfg.with_overrides(**{k: v for k, v in given.items() if k in names})
    cfg = cfg.validate()
    # checks the command adds to the scenario's own (flags and --config alike)
    if cfg.seed < 0:
        raise ScenarioError(f"seed: must be an integer >= 0 (got {cfg.seed})")
    if cfg.tiers < 2:
        raise ScenarioError(f"tiers: must be >= 2: tier k-1 is black (never disabled), so one tier leaves "
                            f"nothing to shed (got {cfg.tiers})")
    if cfg.signal is not None and not Path(cfg.signal).is_file():
        raise ScenarioError(f"signal: file not found: {cfg.signal}")
    return cfg


def _unit(name: str) -> str:
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            return unit
    return ""


def timeseries_columns(res) -> dict:
    """One row per round and control group (group by group; one group is named "fleet")."""
    import numpy as np

    n_groups = len(res.group_names)

    def flat(a):            # (M, N[, k]) -> (N·M[, k]) group-major
        return np.concatenate([a[:, g] for g in range(n_groups)])

    goal, achieved = flat(res.group_goal_kw), flat(res.group_achieved_kw)
    cols = {"t_s": np.tile(res.t_s, n_groups), "group": np.repeat(np.array(res.group_names), res.t_s.size),
            "goal_kw": goal, "achieved_kw": achieved, "error_kw": achieved - goal,
            "estimate_kw": flat(res.group_estimate_kw)}
    enabled, target = flat(res.group_enabled_tier_kw), flat(res.group_target_tier_kw)
    p_on, p_off = flat(res.group_p_on), flat(res.group_p_off)
    for i, name in enumerate(res.tier_names):
        cols[f"enabled_{name}_kw"] = enabled[:, i]
    for i, name in enumerate(res.tier_names):
        cols[f"target_{name}_kw"] = target[:, i]
    for i, name in enumerate(res.tier_names):
        cols[f"p_on_{name}"] = p_on[:, i]
        cols[f"p_off_{name}"] = p_off[:, i]
    cols["scored"] = np.tile(res.scored.astype(int), n_groups)
    return cols


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def print_groups(groups: dict) -> None:
    """Per-group tracking figures as a small table."""
    cols = ["fleet_demand_kw", "rms_pct_of_capacity", "pjm_score", "mean_abs_error_kw", "saturated_rounds"]
    print("  " + f"{'group':<10}" + "".join(f"{c:>22}" for c in cols))
    for name, figs in groups.items():
        print("  " + f"{name:<10}" + "".join(f"{_shown(figs[c]) if c in figs else '-':>22}" for c in cols))


def run(args: argparse.Namespace) -> int:
    from colorgrid.results import RunOutput
    from firmware_sim.scenario import run_scenario
    from firmware_sim.scenario_config import ScenarioError

    try:
        cfg = build_config(args)
    except (ScenarioError, ValueError) as exc:
        print(f"colorgrid simulate: error: {exc}", file=sys.stderr)
        return 2
    try:
        res = run_scenario(cfg)
    except (ScenarioError, ValueError) as exc:  # the inputs' contents (signal, device sizes), read here
        text = str(exc)
        if cfg.signal and str(cfg.signal) in text and not text.startswith("signal"):
            text = f"signal: {text}"
        print(f"colorgrid simulate: error: {text}", file=sys.stderr)
        return 2
    params = asdict(cfg)
    params["tier_shares"] = list(cfg.shares())
    params["goal_mode"] = cfg.resolved_goal_mode()
    out = RunOutput(args.out, "simulate", params, seed=cfg.seed)
    print(f"colorgrid simulate: {cfg.scenario}, {cfg.devices} devices x {cfg.tiers} tiers, "
          f"{cfg.duration_s:g} s scored after {cfg.warmup_s:g} s warm-up, seed {cfg.seed}")
    for name, value in res.metrics.items():
        if name == "groups":
            continue
        unit = _unit(name)
        out.figure(name, value, unit)
        print(f"  {name:<36} {_shown(value):>12} {unit}")
    if "groups" in res.metrics:
        out.figure("groups", res.metrics["groups"])
        print_groups(res.metrics["groups"])
    if out.enabled:
        from firmware_sim.plot import plot_result

        out.write_columns("timeseries.csv", timeseries_columns(res))
        plot_result(res, out.path("simulate.png"))
        out.finish()
        print(f"  results in {args.out}")
    if args.plot:
        from firmware_sim.plot import plot_result

        plot_result(res, args.plot)
    return 0
