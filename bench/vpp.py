"""Bench of `colorgrid day` (issue 17 Targets): `python -m bench.vpp [--json PATH]`.

Figures:
  - the defaults of `colorgrid day` (IEEE 13, 3,400 devices, 24 h): total time (≤ 3 min) and
    delivery_rms_pct;
  - `colorgrid day --feeder IEEE123 --devices 100000 --hours 24` (vectorized, 2-s rounds, the default
    time compression: each market hour a 300-s window): total time (≤ 15 min), the time of every
    stage, delivery_rms_pct (≤ 2 %), the fleet's ms per 2-s round;
  - the uncompressed day (2-s rounds over all 24 h = 43,230 rounds) **extrapolated** from that run's
    measured ms per round (a round costs the same whatever the compression) plus its other stages:
    labelled as an extrapolation, not a run;
  - delivery_rms_pct compressed vs uncompressed on the defaults' fleet for `--compare-hours` hours
    (both run);
  - baseline: the same fleet simulated alone (`firmware_sim.scenario.run_scenario`, constant goal,
    same devices, groups and 2-s rounds, `--baseline-rounds` of them) in the same process: the ratio
    of the day's fleet ms per round to it (the cost of the dispatch path: compressed goal schedule,
    signed DispatchGoal, VPP plan per group) and of the whole day to the fleet alone over the day's rounds.

IEEE 123 is read from the reference data beside the repository (../shared/data/feeders), as bench.lem
does; `--feeder` takes any OpenDSS master. `--devices/--hours` make a reduced run on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench._report import Report

FEEDERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "feeders"
IEEE123 = FEEDERS / "ieee123" / "IEEE123Master.dss"
WARM_ROUNDS = 30                      # the day's 60-s warm-up at 2-s rounds


def _day(argv: list[str], out: Path) -> tuple[dict, float]:
    from colorgrid.cli import main

    t0 = time.perf_counter()
    code = main(["day", *argv, "--out", str(out)])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"bench.vpp: colorgrid day {' '.join(argv)} exited {code}")
    return json.loads((out / "summary.json").read_text())["figures"], wall


def _fleet_alone(day_dir: Path, figures: dict, rounds: int) -> float:
    """ms per 2-s round of the day's fleet (its devices.csv, groups) simulated alone, constant goal."""
    from firmware_sim.scenario import ScenarioConfig, run_scenario

    cfg = ScenarioConfig(scenario="fairness", devices=figures["devices"], groups=figures["vpp_locations"],
                         base=0.7, amplitude=0.0, warmup_s=60.0, duration_s=2.0 * rounds - 60.0, seed=0,
                         device_kw=str(day_dir / "devices.csv"), devices_per_gateway=10)
    t0 = time.perf_counter()
    res = run_scenario(cfg)
    return 1000.0 * (time.perf_counter() - t0) / res.t_s.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vpp")
    parser.add_argument("--feeder", default=str(IEEE123), help="feeder of the large day (default IEEE 123)")
    parser.add_argument("--devices", type=int, default=100_000, help="devices of the large day (default 100000)")
    parser.add_argument("--hours", type=int, default=24, help="hours of the large day (default 24)")
    parser.add_argument("--compare-hours", type=int, default=2,
                        help="hours of the compressed vs uncompressed comparison on the defaults' fleet (0: skip)")
    parser.add_argument("--baseline-rounds", type=int, default=600, help="2-s rounds of the fleet-alone baseline")
    parser.add_argument("--skip-defaults", action="store_true", help="do not time the defaults of colorgrid day")
    parser.add_argument("--iso-from-hour", type=int, default=None,
                        help="reduced run: the shipped ISO prices from this hour on (e.g. 17: the evening peak, "
                             "where the VPP clears) for the --hours intervals; default: the shipped curve from 00:00")
    rep = Report("vpp", argv, parser)
    a = rep.args
    with tempfile.TemporaryDirectory(prefix="bench-vpp-") as tmp:
        tmp = Path(tmp)
        if not a.skip_defaults:
            fig, wall = _day([], tmp / "defaults")
            rep.figure("defaults_total_s", wall, "s", target="<= 180",
                       note=f"IEEE 13, {fig['devices']} devices, 24 h, compression 12")
            rep.figure("defaults_delivery_rms_pct", fig["delivery_rms_pct"], "%", target="<= 2")
            rep.figure("defaults_contract_violations", len(fig["contract_violations"]), "", target="0")
            rep.figure("defaults_violations_after_delivery", fig["violations_after_delivery"], "", target="0")
        big = ["--feeder", a.feeder, "--devices", str(a.devices), "--hours", str(a.hours)]
        if a.iso_from_hour is not None:
            from market.lem.profiles import iso_price

            prices = iso_price(24, None)[a.iso_from_hour:a.iso_from_hour + a.hours]
            (tmp / "iso.csv").write_text("interval,price_usd_per_mwh\n" + "".join(f"{t},{v}\n" for t, v in enumerate(prices)))
            big += ["--iso-price", str(tmp / "iso.csv")]
        fig, wall = _day(big, tmp / "big")
        label = f"{Path(a.feeder).stem}, {fig['devices']} devices at {fig['vpp_locations']} locations, {a.hours} h"
        if a.iso_from_hour is not None:
            label += f" (ISO prices of hours {a.iso_from_hour}-{a.iso_from_hour + a.hours - 1})"
        rep.figure("day_vpp_cleared_kwh", fig["vpp_cleared_kwh"], "kWh")
        full = a.devices >= 100_000 and a.hours >= 24
        rep.figure("day_total_s", wall, "s", target="<= 900" if full else None,
                   note=label + ("" if full else " (reduced size, not the target's)"))
        for name, s in sorted(fig["stage_times_s"].items()):
            rep.figure(f"day_stage_{name}", s, "s")
        rep.figure("day_delivery_rms_pct", fig["delivery_rms_pct"], "%", target="<= 2")
        rep.figure("day_delivery_rms_pct_worst_location", max(fig["delivery_rms_pct_by_location"].values()), "%")
        rep.figure("day_violations_after_delivery", fig["violations_after_delivery"], "")
        rep.figure("day_contract_violations", len(fig["contract_violations"]), "")
        ms = fig["fleet_ms_per_round"]
        rep.figure("day_fleet_ms_per_round", ms, "ms", note=f"{fig['fleet_rounds']} rounds of 2 s")
        rounds_real = a.hours * 1800 + WARM_ROUNDS
        other = wall - fig["stage_times_s"]["fleet_dispatched_s"]
        rep.figure("uncompressed_day_total_s_extrapolated", other + ms * rounds_real / 1000.0, "s",
                   note=f"EXTRAPOLATED: {rounds_real} rounds x the measured {ms:.1f} ms + the other stages of this run")
        if not full:
            rounds_24 = 24 * int(round(300 / 2)) + WARM_ROUNDS
            rep.figure("compressed_24h_fleet_s_extrapolated", ms * rounds_24 / 1000.0, "s",
                       note=f"EXTRAPOLATED: the 24-h dispatched fleet stage, {rounds_24} rounds x {ms:.1f} ms")
            rep.figure("uncompressed_24h_fleet_s_extrapolated", ms * (24 * 1800 + WARM_ROUNDS) / 1000.0, "s",
                       note=f"EXTRAPOLATED: the 24-h dispatched fleet stage uncompressed, {24 * 1800 + WARM_ROUNDS} rounds")
        base_ms = _fleet_alone(tmp / "big", fig, a.baseline_rounds)
        rep.figure("fleet_alone_ms_per_round", base_ms, "ms", note=f"baseline, {a.baseline_rounds} rounds, same fleet")
        rep.ratio("day_fleet_round_vs_fleet_alone", ms, base_ms, note="dispatch path overhead per round")
        rep.ratio("day_total_vs_fleet_alone", wall, base_ms * fig["fleet_rounds"] / 1000.0,
                  note="whole day / its rounds of the fleet alone")
        if a.compare_hours:
            comp, _ = _day(["--hours", str(a.compare_hours), "--p2p-participants", "0", "--no-report"], tmp / "c")
            real, real_wall = _day(["--hours", str(a.compare_hours), "--no-compression", "--p2p-participants", "0",
                                    "--no-report"], tmp / "u")
            rep.figure("compare_compressed_delivery_rms_pct", comp["delivery_rms_pct"], "%",
                       note=f"defaults' fleet, {a.compare_hours} h, 300 s per hour")
            rep.figure("compare_uncompressed_delivery_rms_pct", real["delivery_rms_pct"], "%",
                       note=f"defaults' fleet, {a.compare_hours} h, 3600 s per hour")
            rep.figure("compare_uncompressed_total_s", real_wall, "s")
    rep.done()


if __name__ == "__main__":
    main()
