"""Closed-loop scenarios on the vectorized fleet: regulation tracking, step, ramp, fairness.

    cfg = ScenarioConfig(scenario="regulation", devices=10_000, amplitude=0.15)
    res = run_scenario(cfg)          # ScenarioResult: time series + metrics dict

One round m at t = m·round_s: overrides start; the fleet steps with the vector decided last round;
the true enabled kW is measured (`achieved_kw`); the physics advances the device demand; the
gateway reports go through the report channel (loss, noise, sampling, lag) into the estimator; the
controller predicts the state at the next round's switching instant and runs the control law on
a goal for round m+1 chosen by `goal_mode`: `now` = g(t_m) (the response then trails the goal by
one round), `extrapolate` = g(t_m) + (g(t_m) - g(t_m-1)) clipped to base ± capacity (causal, for
a regulation signal that is not known ahead and never leaves [-1, 1]), `preview` = g(t_m+1) (a dispatch schedule known one round before it applies);
`auto` = extrapolate for regulation, preview otherwise.

Goal (kW) = fraction × D, D = the fleet's expected demand (Σ rated kW for constant loads,
Σ rated × steady duty for thermostatic ones). The first `warmup_s` are not scored (the fleet starts
fully enabled and must first reach the base).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloud.control_law import ControlParams, compute_control
from cloud.estimator import EstimatorError, FleetEstimator, RefractoryParams
from cloud.goals import ConstantGoal, ExtrapolatedGoal, RampGoal, RegulationGoal, StepGoal, load_signal
from firmware_sim.disturbances import OverrideProcess, ReportChannel
from firmware_sim.physics import ConstantLoads, MixedLoads
from firmware_sim.scenario_config import ScenarioConfig, ScenarioError, device_sizes, tier_names
from firmware_sim.scenario_metrics import scenario_metrics
from firmware_sim.vector_fleet import VectorFleet

__all__ = ["ScenarioConfig", "ScenarioError", "ScenarioResult", "run_scenario", "build_goal"]


@dataclass
class ScenarioResult:
    config: ScenarioConfig
    tier_names: tuple[str, ...]
    fleet_kw: float                  # D, expected fleet demand
    base_kw: float
    capacity_kw: float               # |amplitude| · D
    t_s: np.ndarray
    goal_kw: np.ndarray
    achieved_kw: np.ndarray
    estimate_kw: np.ndarray          # controller's predicted enabled kW at its decision
    enabled_tier_kw: np.ndarray      # (M, k) true enabled kW per tier
    target_tier_kw: np.ndarray       # (M, k) per-tier targets of the decision made at t
    p_on: np.ndarray                 # (M, k)
    p_off: np.ndarray                # (M, k)
    scored: np.ndarray               # (M,) bool, t >= warmup_s
    metrics: dict = field(default_factory=dict)
    step_at_s: float | None = None


class _HoldBefore:
    """`schedule` from `start_ms` on; before it, the schedule's value at `start_ms`."""

    def __init__(self, schedule, start_ms: int):
        self.schedule, self.start_ms = schedule, start_ms

    def goal_kw(self, group: str, t_ms: int) -> float:
        return self.schedule.goal_kw(group, max(t_ms, self.start_ms))


def build_goal(cfg: ScenarioConfig, fleet_kw: float, signal: np.ndarray | None):
    """(goal schedule, step time s or None) for the scenario; times in ms from the run start."""
    base, amp = cfg.base * fleet_kw, cfg.amplitude * fleet_kw
    w_ms = int(round(cfg.warmup_s * 1000))   # scored period starts here
    if cfg.scenario == "regulation":
        # during the warm-up the goal holds the first scored value (no jump when scoring starts)
        reg = RegulationGoal(base, amp, signal=signal, start_ms=w_ms, start_s=cfg.start_s)
        return _HoldBefore(reg, w_ms), None
    if cfg.scenario == "step":
        step_at = cfg.warmup_s + min(60.0, cfg.duration_s / 4)
        return StepGoal(base, base + amp, step_at), step_at
    if cfg.scenario == "ramp":
        a = cfg.warmup_s + cfg.duration_s / 4
        return RampGoal(base, base + amp, a, a + cfg.duration_s / 2), None
    return ConstantGoal(base), None


class _Preview:
    """The schedule read one round ahead (a dispatch known before it applies)."""

    def __init__(self, schedule, lead_ms: int):
        self.schedule, self.lead_ms = schedule, lead_ms

    def goal_kw(self, group: str, t_ms: int) -> float:
        return self.schedule.goal_kw(group, t_ms + self.lead_ms)


def _control_goal(mode: str, goal, r_ms: int, bounds_kw=(None, None)):
    if mode == "preview":
        return _Preview(goal, r_ms)
    if mode == "extrapolate":
        return ExtrapolatedGoal(goal, r_ms, r_ms, *bounds_kw)
    return goal


def _loads(cfg: ScenarioConfig, rated: np.ndarray, rng: np.random.Generator):
    if cfg.load_model == "constant":
        return ConstantLoads(rated), float(rated.sum())
    if cfg.load_model == "mixed":
        kinds = rng.choice(np.array(["constant", "water_heater", "ac"]), size=rated.size)
    else:
        kinds = np.full(rated.size, cfg.load_model)
    loads = MixedLoads(rated, kinds, rng)
    expected = 0.0
    for idx, model in loads.groups:
        duty = model.duty_estimate() if hasattr(model, "duty_estimate") else 1.0
        expected += float(np.sum(rated[idx] * duty))
    return loads, expected


def run_scenario(cfg: ScenarioConfig) -> ScenarioResult:
    """Run the closed loop described by `cfg` and compute its metrics."""
    cfg.validate()
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_dev, rng_fleet, rng_phys, rng_ovr, rng_chan, _ = (np.random.default_rng(s) for s in seeds)
    rated = device_sizes(cfg, rng_dev)
    shares = np.asarray(cfg.shares())
    refr = RefractoryParams()
    fleet = VectorFleet(rated, shares, rng_fleet, refr, devices_per_gateway=cfg.devices_per_gateway,
                        round_s=cfg.round_s)
    loads, fleet_kw = _loads(cfg, rated, rng_phys)
    fleet.demand_kw = np.array(loads.demand_kw(), dtype=float)
    signal = load_signal(cfg.signal) if cfg.scenario == "regulation" else None
    goal, step_at = build_goal(cfg, fleet_kw, signal)
    overrides = OverrideProcess(cfg.override_fraction, cfg.override_duration_s, cfg.round_s, rng_ovr)
    channel = ReportChannel(rng_chan, cfg.report_loss, cfg.noise_std, cfg.lag_rounds, cfg.sample_every)
    est = FleetEstimator(fleet.k, cfg.round_s, cfg.max_age_s, refr)
    law = ControlParams(alpha=cfg.alpha, round_s=cfg.round_s, fairness_horizon_s=cfg.fairness_horizon_s,
                        max_switches_per_device_hour=cfg.max_switches_per_device_hour,
                        flex_reserve_share=cfg.flex_reserve_share)
    overrides.start(fleet, 0.0)

    n_rounds = int(round((cfg.warmup_s + cfg.duration_s) / cfg.round_s))
    k, r_ms = fleet.k, int(round(cfg.round_s * 1000))
    bounds = (None, None)
    if cfg.scenario == "regulation":     # a regulation signal never leaves base ± capacity
        amp = abs(cfg.amplitude) * fleet_kw
        bounds = (cfg.base * fleet_kw - amp, cfg.base * fleet_kw + amp)
    control_goal = _control_goal(cfg.resolved_goal_mode(), goal, r_ms, bounds)
    t_s = np.arange(n_rounds) * cfg.round_s
    out = {name: np.zeros(n_rounds) for name in ("goal", "achieved", "estimate")}
    tiers = {name: np.zeros((n_rounds, k)) for name in ("enabled", "target", "p_on", "p_off")}
    scored = t_s >= cfg.warmup_s - 1e-9
    first_scored = int(np.argmax(scored)) if scored.any() else n_rounds
    vector: tuple | None = None
    saturated = 0
    for m in range(n_rounds):
        t, t_ms = float(t_s[m]), m * r_ms
        if m == first_scored:            # metrics count from the end of the warm-up
            fleet.reset_counters(t)
        if m > 0:
            overrides.step(fleet, t)
        fleet.step(t, *(vector if vector is not None else (None, None)))
        truth = fleet.aggregate()
        tiers["enabled"][m] = truth[:, 0] + truth[:, 1]
        out["achieved"][m] = tiers["enabled"][m].sum()
        if not isinstance(loads, ConstantLoads):
            fleet.demand_kw = np.array(loads.advance(cfg.round_s, fleet.enabled_fraction()), dtype=float)
        channel.send(m, t_ms, fleet.gateway_reports())
        for ids, rep, ts in channel.deliver(m):
            est.update(ids, rep, ts)
        out["goal"][m] = goal.goal_kw("fleet", t_ms)
        g = control_goal.goal_kw("fleet", t_ms)
        try:
            pred = est.predict(t_ms + r_ms, now_ms=t_ms)
        except EstimatorError:
            vector = None                 # nothing to act on: the fleet keeps its vector / fail-safe
            continue
        d = compute_control(pred, g, law)
        est.record_decision(t_ms + r_ms, d)
        vector = (d.p_on, d.p_off)
        saturated += int(d.saturated and scored[m])
        out["estimate"][m] = d.expected_enabled_kw
        tiers["target"][m], tiers["p_on"][m], tiers["p_off"][m] = d.target_kw, d.p_on, d.p_off

    res = ScenarioResult(
        config=cfg, tier_names=tier_names(k), fleet_kw=fleet_kw, base_kw=cfg.base * fleet_kw,
        capacity_kw=abs(cfg.amplitude) * fleet_kw, t_s=t_s, goal_kw=out["goal"],
        achieved_kw=out["achieved"], estimate_kw=out["estimate"], enabled_tier_kw=tiers["enabled"],
        target_tier_kw=tiers["target"], p_on=tiers["p_on"], p_off=tiers["p_off"], scored=scored,
        step_at_s=step_at)
    res.metrics = scenario_metrics(res, fleet, refr, channel, saturated)
    return res
