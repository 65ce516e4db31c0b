"""Fleet bench: vectorized round time per 1M tier-slices vs a naive per-slice Python loop, and
closed-loop tracking / fairness figures for 10k and 100k devices.

    python -m bench.fleet [--json PATH] [--quick]

Speed: a VectorFleet of 333,334 devices x 3 tiers (1,000,002 slices) in a mixed state (warmed up
100 rounds with p_on = p_off = 0.02 on green and yellow) is stepped with that vector; the figure is
the median over 5 blocks of the mean round time (timers + switching + the fleet's (k, 4) kW
aggregate, kept up to date from the transitions), and of a full round that also builds every
gateway's (k, 4) report. The baseline is a straightforward per-slice Python loop (lists,
`random.random()` per flexible slice, the same timers/switching/per-tier aggregation), timed the
same way on a 30,000-slice subset in the same process and scaled linearly to 1M slices (said in
the output). Neither keeps per-slice statistics (`track_on_time=False`). Tracking figures come from `firmware_sim.scenario`.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from bench._report import Report
from firmware_sim.scenario import ScenarioConfig, run_scenario
from firmware_sim.vector_fleet import VectorFleet

SHARES = (0.45, 0.45, 0.1)
P_ON = np.array([0.02, 0.02, 1.0])
P_OFF = np.array([0.02, 0.02, 0.0])


def vector_round_ms(n_devices: int, rounds: int) -> tuple[float, float]:
    fleet = VectorFleet(np.random.default_rng(0).uniform(1, 5, n_devices), SHARES,
                        np.random.default_rng(1), track_on_time=False)
    t = 0.0
    for _ in range(100):                      # mixed states: some slices refractory, some not
        fleet.step(t, P_ON, P_OFF)
        t += 2.0
    steps, fulls = [], []
    for _ in range(5):                        # median of 5 blocks (the machine is shared)
        t0 = time.perf_counter()
        for _ in range(rounds):
            fleet.step(t, P_ON, P_OFF)
            t += 2.0
        steps.append((time.perf_counter() - t0) / rounds)
        t0 = time.perf_counter()
        for _ in range(rounds):
            fleet.step(t, P_ON, P_OFF)
            fleet.gateway_reports()
            t += 2.0
        fulls.append((time.perf_counter() - t0) / rounds)
    return float(np.median(steps)) * 1e3, float(np.median(fulls)) * 1e3


def naive_round_ms(n_devices: int, rounds: int) -> float:
    """Per-slice Python loop: timers, one random.random() per flexible slice, aggregation."""
    rng = random.Random(1)
    k = len(SHARES)
    kw = [rng.uniform(1, 5) * SHARES[i] for _ in range(n_devices) for i in range(k)]
    tier = [i for _ in range(n_devices) for i in range(k)]
    state = [0] * len(kw)
    end = [0.0] * len(kw)
    p_on, p_off = P_ON.tolist(), P_OFF.tolist()

    def one_round(t: float) -> list[list[float]]:
        agg = [[0.0] * 4 for _ in range(k)]
        for j in range(len(kw)):
            s = state[j]
            if s % 2 == 1 and end[j] <= t:
                s -= 1
            if s == 0 and tier[j] != k - 1:
                if rng.random() < p_off[tier[j]]:
                    s = 3
                    end[j] = t + 120.0 + 60.0 * rng.random()
            elif s == 2:
                if rng.random() < p_on[tier[j]]:
                    s = 1
                    end[j] = t + 120.0 + 60.0 * rng.random()
            state[j] = s
            agg[tier[j]][s] += kw[j]
        return agg

    t = 0.0
    for _ in range(100):
        one_round(t)
        t += 2.0
    times = []
    for _ in range(5):                        # median of 5 blocks, as for the vector fleet
        t0 = time.perf_counter()
        for _ in range(rounds):
            one_round(t)
            t += 2.0
        times.append((time.perf_counter() - t0) / rounds)
    return float(np.median(times)) * 1e3


def tracking(rep: Report, devices: int, label: str, **kw) -> dict:
    cfg = ScenarioConfig(devices=devices, **kw)
    t0 = time.perf_counter()
    m = run_scenario(cfg).metrics
    wall = time.perf_counter() - t0
    return {"m": m, "wall": wall, "label": label}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--quick", action="store_true", help="smaller runs (development)")
    rep = Report("fleet", argv, parser)
    quick = rep.args.quick
    n_slices = 1_000_002
    n_dev = n_slices // 3
    step_ms, full_ms = vector_round_ms(n_dev, 5 if quick else 10)
    rep.figure("vector_round_ms_per_1m_slices", step_ms, "ms", target="<= 50",
               note="timers + switching, 1,000,002 slices")
    rep.figure("vector_round_with_reports_ms_per_1m_slices", full_ms, "ms",
               note="+ per-gateway (k, 4) aggregation")
    subset = 10_000                                  # devices -> 30,000 slices
    naive_ms = naive_round_ms(subset, 2 if quick else 4) * (n_slices / (3 * subset))
    rep.figure("naive_loop_round_ms_per_1m_slices", naive_ms, "ms",
               note="per-slice Python loop timed on 30,000 slices, scaled x33.3")
    rep.ratio("speedup_vs_naive_loop", naive_ms, step_ms, target=">= 100")
    rep.ratio("speedup_vs_naive_loop_with_reports", naive_ms, full_ms)

    minutes = 10 if quick else 40
    reg = dict(scenario="regulation", duration_s=60.0 * minutes, amplitude=0.15, base=0.5)
    cases = [
        (10_000, "10k_fresh", dict(reg)),
        (10_000, "10k_lag1_loss5", dict(reg, lag_rounds=1, report_loss=0.05)),
        (10_000, "10k_fresh_amp10", dict(reg, amplitude=0.10)),
        (10_000, "10k_fresh_amp20", dict(reg, amplitude=0.20)),
        (10_000, "10k_fresh_amp20_start20000s", dict(reg, amplitude=0.20, start_s=20_000.0)),
        (10_000, "10k_fresh_goal_now", dict(reg, goal_mode="now")),
        (10_000, "10k_mixed_thermostatic_fresh", dict(reg, load_model="mixed", amplitude=0.10)),
        (100_000, "100k_fresh", dict(reg)),
        (100_000, "100k_lag1_loss5", dict(reg, lag_rounds=1, report_loss=0.05)),
    ]
    for devices, label, kw in cases:
        r = tracking(rep, devices, label, **kw)
        m = r["m"]
        target_pjm = ">= 0.90" if "lag1" in label else ">= 0.95"
        main_case = label in ("10k_fresh", "10k_lag1_loss5")
        rep.figure(f"{label}_pjm_score", m["pjm_score"], "", target=target_pjm if main_case else None)
        rep.figure(f"{label}_rms_pct_of_capacity", m["rms_pct_of_capacity"], "%",
                   target="<= 2" if label == "10k_fresh" else None)
        rep.figure(f"{label}_switches_per_device_hour", m["switches_per_device_hour"], "1/h",
                   note=f"{devices} devices, {minutes} min, sim {r['wall']:.1f} s")

    step = tracking(rep, 10_000, "step", scenario="step", base=0.5, amplitude=-0.2,
                    duration_s=900.0)["m"]
    rep.figure("10k_step_down_error_pct_after_2_refractory", step["step_error_pct_after_2_refractory"], "%",
               target="< 2", note="step 0.5 -> 0.3 of demand; % of the goal")
    rep.figure("10k_step_down_settle_s", step.get("step_settle_s", -1.0), "s", target="<= 360")
    step_up = tracking(rep, 10_000, "step", scenario="step", base=0.3, amplitude=0.2, duration_s=900.0)["m"]
    rep.figure("10k_step_up_error_pct_after_2_refractory", step_up["step_error_pct_after_2_refractory"], "%",
               target="< 2")
    rep.figure("10k_step_up_settle_s", step_up.get("step_settle_s", -1.0), "s", target="<= 360")

    hours = 0.5 if quick else 2.0
    fair = tracking(rep, 10_000, "fairness", scenario="fairness", base=0.325, amplitude=0.0,
                    duration_s=3600.0 * hours)["m"]
    rep.figure("10k_fairness_on_time_std", fair["fairness_on_time_std"], "", target="<= 0.10",
               note=f"{hours:g} h constant goal, yellow half served (mean on-time "
                    f"{fair['on_time_mean_yellow']:.3f})")
    rep.figure("10k_fairness_switches_per_device_hour", fair["switches_per_device_hour"], "1/h",
               target="<= 10")
    rep.done()


if __name__ == "__main__":
    main()
