"""Bench of the local energy market clearing (issue 15): `python -m bench.lem [--json PATH]`.

Figures (targets from issue 15):
  IEEE 123, 24 h day-ahead, the generated market at `--density 2` (328 offers/bids: 46 storage,
  46 blocks, 18 units with commitment): total clearing time (SCUC + pricing LP + AC power-flow
  iterations, `clear_with_ac`, ≤ 10 s), the time of each stage, iterations, critical-set size, Pyomo
  build vs HiGHS compile vs MIP / LP solve time;
  with `--full`, the same case with every line·phase and bus·phase limit in the model from the start
  (no critical set) in the same process — the baseline of the ratio `critical_set_speedup` — and
  whether both give the same schedule (a run of ~5 min, hence opt-in);
  one interval on IEEE 123 (a real-time-like single clearing, 1 h; ≤ 1 s);
  with `--ieee8500`, IEEE 8500-node 24 h day-ahead with its generated market (goal ≤ 120 s).
Same schedule: objectives equal to SAME_OBJECTIVE_RTOL and every resource's kW in every interval to
SAME_SCHEDULE_KW (the iteration's fixed-point tolerance leaves ~1e-3 kW); the figure prints 1 (same)
or 0.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench._report import Report
from market.lem.iteration import clear_with_ac
from market.lem.network_data import CriticalSet
from market.lem.offers import counts, generate_offers
from market.lem.profiles import load_shape
from market.lem.schema import load_market
from market.network import load_dss

FEEDERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "feeders"
IEEE123 = FEEDERS / "ieee123" / "IEEE123Master.dss"
IEEE8500 = FEEDERS / "ieee8500" / "Master.dss"
SAME_OBJECTIVE_RTOL = 1e-4
SAME_SCHEDULE_KW = 1.0
STAGES = ("base_power_flow_s", "base_linearise_s", "clear_s", "build_s", "compile_s", "mip_s", "lp_s",
          "power_flow_s", "linearise_s")


def _case(feeder, intervals: int, density: float, seed: int):
    doc = generate_offers(feeder, seed, intervals, density)
    return doc, load_market(doc)


def _schedule_gap_kw(a, b) -> float:
    return max(float(np.max(np.abs(a.clearing.schedule_kw[k] - b.clearing.schedule_kw[k]))) for k in a.clearing.schedule_kw)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lem")
    parser.add_argument("--density", type=float, default=2.0, help="offer generator density (default 2: 328 participants)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full", action="store_true",
                        help="also clear with every limit from the start (the baseline of critical_set_speedup "
                             "and the same-schedule check; minutes on IEEE 123: ~26k dense rows)")
    parser.add_argument("--ieee8500", action="store_true", help="also clear IEEE 8500-node, 24 h day-ahead")
    parser.add_argument("--ieee8500-density", type=float, default=0.1,
                        help="offer density on IEEE 8500 (default 0.1: ~420 participants, as many as on IEEE 123)")
    rep = Report("lem", argv, parser)
    args = rep.args
    feeder = load_dss(IEEE123)[0]
    doc, market = _case(feeder, 24, args.density, args.seed)
    n = counts(doc)
    rep.figure("dam_participants", n["offers_and_bids"], "offers/bids", target=">= 300")
    rep.figure("dam_storage", n["storage"], "units", target=">= 20")
    rep.figure("dam_blocks", n["blocks"], "orders", target=">= 20")
    rep.figure("dam_units_with_commitment", n["units"], "units")
    shape = load_shape(24, None)

    t0 = time.perf_counter()
    crit = clear_with_ac(market, feeder, shape)
    total = time.perf_counter() - t0
    rep.figure("dam_ieee123_total_s", total, "s", target="<= 10",
               note=f"status {crit.status}" + (f" ({crit.note})" if crit.note else ""))
    for k in STAGES:
        rep.figure(f"dam_ieee123_{k}", crit.timings_s[k], "s")
    rep.figure("dam_ieee123_iterations", len(crit.iterations), "")
    rep.figure("dam_ieee123_critical_lines", len(crit.critical.lines), "rows")
    rep.figure("dam_ieee123_critical_voltages", len(crit.critical.voltages), "rows")
    rep.figure("dam_ieee123_violations_left", len(crit.violations), "", target="0")
    rep.figure("dam_ieee123_objective_usd", crit.clearing.objective_usd, "USD")
    build = crit.timings_s["build_s"] + crit.timings_s["compile_s"]
    rep.ratio("dam_ieee123_build_over_solve", build, crit.timings_s["mip_s"] + crit.timings_s["lp_s"],
              note="Pyomo build + HiGHS compile / HiGHS MIP + LP")

    if args.full:
        every = crit.net.all_rows()
        t0 = time.perf_counter()
        full = clear_with_ac(market, feeder, shape, critical=CriticalSet(list(every.lines), list(every.voltages)))
        full_s = time.perf_counter() - t0
        rep.figure("dam_ieee123_every_limit_total_s", full_s, "s", note=f"status {full.status}, "
                   f"{len(every.lines)} line + {len(every.voltages)} voltage rows per interval")
        for k in ("clear_s", "build_s", "compile_s", "mip_s", "lp_s"):
            rep.figure(f"dam_ieee123_every_limit_{k}", full.timings_s[k], "s")
        rep.figure("dam_ieee123_every_limit_iterations", len(full.iterations), "")
        rep.figure("dam_ieee123_every_limit_objective_usd", full.clearing.objective_usd, "USD")
        rep.ratio("critical_set_speedup", full_s, total, note="every limit from the start / critical set")
        gap = _schedule_gap_kw(crit, full)
        d_obj = abs(full.clearing.objective_usd - crit.clearing.objective_usd)
        rep.figure("same_schedule_max_diff_kw", gap, "kW", target=f"<= {SAME_SCHEDULE_KW}",
                   note="critical set vs every limit, max over resources and intervals")
        rep.figure("same_schedule_objective_diff_usd", d_obj, "USD",
                   target=f"<= {SAME_OBJECTIVE_RTOL:g} x {abs(crit.clearing.objective_usd):.2f}")
        same = gap <= SAME_SCHEDULE_KW and d_obj <= SAME_OBJECTIVE_RTOL * max(1.0, abs(crit.clearing.objective_usd))
        rep.figure("same_schedule", float(same), "", target="1", note="1: the same schedule within tolerance")

    _, one = _case(feeder, 1, args.density, args.seed)
    t0 = time.perf_counter()
    single = clear_with_ac(one, feeder, [1.0])
    rep.figure("single_interval_ieee123_total_s", time.perf_counter() - t0, "s", target="<= 1",
               note=f"status {single.status}, {len(single.iterations)} iteration(s)")
    rep.figure("single_interval_ieee123_clear_s", single.timings_s["clear_s"], "s")
    if args.ieee8500:
        _ieee8500(rep, args)
    rep.done()


def _ieee8500(rep: Report, args) -> None:
    t0 = time.perf_counter()
    feeder = load_dss(IEEE8500)[0]
    load_s = time.perf_counter() - t0
    doc, market = _case(feeder, 24, args.ieee8500_density, args.seed)
    n = counts(doc)
    t0 = time.perf_counter()
    res = clear_with_ac(market, feeder, load_shape(24, None))
    total = time.perf_counter() - t0
    rep.figure("dam_ieee8500_total_s", total, "s", target="<= 120",
               note=f"status {res.status}, {n['offers_and_bids']} offers/bids, {len(res.iterations)} iterations, "
                    f"feeder import {load_s:.1f} s (not counted)")
    for k in STAGES:
        rep.figure(f"dam_ieee8500_{k}", res.timings_s[k], "s")
    rep.figure("dam_ieee8500_critical_rows", len(res.critical.lines) + len(res.critical.voltages), "rows")
    rep.figure("dam_ieee8500_violations_left", len(res.violations), "", target="0")
    rep.figure("dam_ieee8500_objective_usd", res.clearing.objective_usd, "USD")


if __name__ == "__main__":
    main()
