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

Control groups (`groups` = N): the gateways are split into N contiguous blocks; group g has its
own goal (the same fraction of *its* expected demand D_g, its signal or schedule starting
g · `group_offset_s` later), its own estimator and its own vector, and every group's round runs
through `cloud.round_step.GroupRound` — the same step the MQTT controller runs. The result keeps
per-group series (`group_*`, shape (M, N) or (M, N, k)) and the fleet totals.

External goal (`run_scenario(cfg, goal=schedule)`): any `cloud.goals.GoalSchedule` — e.g. a VPP's
dispatched schedules per group — replaces the scenario's goal for every group. It is asked for the
group names of `cfg.group_names()` at times in ms from the run start, in absolute kW (the recorded
goal is read without the group's demand); `goal_mode` applies as for the built-in goals (auto:
preview, unless the scenario is regulation). Without `goal` nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloud.control_law import ControlParams
from cloud.estimator import EstimatorError, FleetEstimator, RefractoryParams
from cloud.goals import (ConstantGoal, ExtrapolatedGoal, GoalSchedule, PerGroupGoal, RampGoal,
                         RegulationGoal, StepGoal, load_signal)
from cloud.round_step import GroupRound
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
    goal_kw: np.ndarray              # (M,) Σ over groups
    achieved_kw: np.ndarray
    estimate_kw: np.ndarray          # controller's predicted enabled kW at its decision
    enabled_tier_kw: np.ndarray      # (M, k) true enabled kW per tier
    target_tier_kw: np.ndarray       # (M, k) per-tier targets of the decision made at t
    p_on: np.ndarray                 # (M, k) (one group: its vector; several: kW-weighted mean)
    p_off: np.ndarray                # (M, k)
    scored: np.ndarray               # (M,) bool, t >= warmup_s
    metrics: dict = field(default_factory=dict)
    step_at_s: float | None = None
    group_names: tuple[str, ...] = ("fleet",)
    group_kw: np.ndarray | None = None            # (N,) D_g
    group_goal_kw: np.ndarray | None = None       # (M, N)
    group_achieved_kw: np.ndarray | None = None   # (M, N)
    group_estimate_kw: np.ndarray | None = None   # (M, N)
    group_enabled_tier_kw: np.ndarray | None = None   # (M, N, k)
    group_target_tier_kw: np.ndarray | None = None    # (M, N, k)
    group_p_on: np.ndarray | None = None          # (M, N, k)
    group_p_off: np.ndarray | None = None         # (M, N, k)
    group_saturated: np.ndarray | None = None     # (N,) scored rounds with a clipped goal


class _HoldBefore(GoalSchedule):
    """`schedule` from `start_ms` on; before it, the schedule's value at `start_ms`."""

    def __init__(self, schedule: GoalSchedule, start_ms: int):
        self.schedule, self.start_ms = schedule, start_ms

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.schedule.goal_kw(group, max(t_ms, self.start_ms), demand_kw)


def build_goal(cfg: ScenarioConfig, fleet_kw: float, signal: np.ndarray | None, offset_s: float = 0.0):
    """(goal schedule, step time s or None) for the scenario; times in ms from the run start;
    `offset_s` moves the signal / schedule later (a group's offset)."""
    base, amp = cfg.base * fleet_kw, cfg.amplitude * fleet_kw
    w_ms = int(round(cfg.warmup_s * 1000))   # scored period starts here
    if cfg.scenario == "regulation":
        # during the warm-up the goal holds the first scored value (no jump when scoring starts)
        reg = RegulationGoal(base, amp, signal=signal, start_ms=w_ms, start_s=cfg.start_s + offset_s)
        return _HoldBefore(reg, w_ms), None
    if cfg.scenario == "step":
        step_at = cfg.warmup_s + min(60.0, cfg.duration_s / 4) + offset_s
        return StepGoal(base, base + amp, step_at), step_at
    if cfg.scenario == "ramp":
        a = cfg.warmup_s + cfg.duration_s / 4 + offset_s
        return RampGoal(base, base + amp, a, a + cfg.duration_s / 2), None
    return ConstantGoal(base), None


class _Preview(GoalSchedule):
    """The schedule read one round ahead (a dispatch known before it applies)."""

    def __init__(self, schedule: GoalSchedule, lead_ms: int):
        self.schedule, self.lead_ms = schedule, lead_ms

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.schedule.goal_kw(group, t_ms + self.lead_ms, demand_kw)


def _control_goal(mode: str, goal, r_ms: int, bounds_kw=(None, None)):
    if mode == "preview":
        return _Preview(goal, r_ms)
    if mode == "extrapolate":
        return ExtrapolatedGoal(goal, r_ms, r_ms, *bounds_kw)
    return goal


def _loads(cfg: ScenarioConfig, rated: np.ndarray, rng: np.random.Generator):
    """(load model, expected fleet kW, expected kW per device)."""
    if cfg.load_model == "constant":
        return ConstantLoads(rated), float(rated.sum()), rated
    if cfg.load_model == "mixed":
        kinds = rng.choice(np.array(["constant", "water_heater", "ac"]), size=rated.size)
    else:
        kinds = np.full(rated.size, cfg.load_model)
    loads = MixedLoads(rated, kinds, rng)
    expected, per_device = 0.0, np.zeros(rated.size)
    for idx, model in loads.groups:
        duty = model.duty_estimate() if hasattr(model, "duty_estimate") else 1.0
        per_device[idx] = rated[idx] * duty
        expected += float(np.sum(rated[idx] * duty))
    return loads, expected, per_device


class _Groups:
    """Per-group goals, estimators and round steps of one scenario run."""

    def __init__(self, cfg: ScenarioConfig, fleet: VectorFleet, group_kw: np.ndarray,
                 signal, refr: RefractoryParams, law: ControlParams, external: GoalSchedule | None = None):
        self.names = cfg.group_names()
        self.first_gw = np.searchsorted(fleet.group_of_gateway, np.arange(fleet.n_groups))
        self.of_gateway = fleet.group_of_gateway
        r_ms = int(round(cfg.round_s * 1000))
        if external is not None:
            self.goal, self.step_at = external, None
            self.control_goal = _control_goal(cfg.resolved_goal_mode(), external, r_ms)
        else:
            self._build_goals(cfg, group_kw, signal, r_ms)
        self.steps = [GroupRound(name, self.control_goal, law,
                                 FleetEstimator(fleet.k, cfg.round_s, cfg.max_age_s, refr))
                      for name in self.names]

    def _build_goals(self, cfg: ScenarioConfig, group_kw: np.ndarray, signal, r_ms: int) -> None:
        goals, control, self.step_at = {}, {}, None
        for g, name in enumerate(self.names):
            goal, step_at = build_goal(cfg, float(group_kw[g]), signal, g * cfg.group_offset_s)
            self.step_at = step_at if self.step_at is None else self.step_at
            bounds = (None, None)
            if cfg.scenario == "regulation":     # a regulation signal never leaves base ± capacity
                amp = abs(cfg.amplitude) * group_kw[g]
                bounds = (cfg.base * group_kw[g] - amp, cfg.base * group_kw[g] + amp)
            goals[name] = goal
            control[name] = _control_goal(cfg.resolved_goal_mode(), goal, r_ms, bounds)
        self.goal, self.control_goal = PerGroupGoal(goals), PerGroupGoal(control)

    def deliver(self, ids: np.ndarray, rep: np.ndarray, ts) -> None:
        """Gateway reports into their group's estimator (sources numbered within the group)."""
        grp = self.of_gateway[ids]
        for g in np.unique(grp):
            sel = grp == g
            self.steps[g].estimator.update(ids[sel] - self.first_gw[g], rep[sel], ts)


def _series(n_rounds: int, n_groups: int, k: int) -> dict:
    out = {name: np.zeros((n_rounds, n_groups)) for name in ("goal", "achieved", "estimate")}
    out.update({name: np.zeros((n_rounds, n_groups, k)) for name in ("enabled", "target", "p_on", "p_off")})
    return out


def run_scenario(cfg: ScenarioConfig, goal: GoalSchedule | None = None) -> ScenarioResult:
    """Run the closed loop described by `cfg` and compute its metrics; `goal` (optional) replaces
    the scenario's goal for every group (module docstring, "External goal")."""
    cfg.validate()
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_dev, rng_fleet, rng_phys, rng_ovr, rng_chan, _ = (np.random.default_rng(s) for s in seeds)
    rated = device_sizes(cfg, rng_dev)
    shares = np.asarray(cfg.shares())
    refr = RefractoryParams()
    fleet = VectorFleet(rated, shares, rng_fleet, refr, devices_per_gateway=cfg.devices_per_gateway,
                        round_s=cfg.round_s, groups=cfg.groups)
    loads, fleet_kw, device_kw = _loads(cfg, rated, rng_phys)
    group_kw = (np.array([fleet_kw]) if cfg.groups == 1 else
                np.array([float(device_kw[fleet.group_of == g].sum()) for g in range(cfg.groups)]))
    fleet.demand_kw = np.array(loads.demand_kw(), dtype=float)
    signal = load_signal(cfg.signal) if cfg.scenario == "regulation" else None
    law = ControlParams(alpha=cfg.alpha, round_s=cfg.round_s, fairness_horizon_s=cfg.fairness_horizon_s,
                        max_switches_per_device_hour=cfg.max_switches_per_device_hour,
                        flex_reserve_share=cfg.flex_reserve_share)
    groups = _Groups(cfg, fleet, group_kw, signal, refr, law, goal)
    overrides = OverrideProcess(cfg.override_fraction, cfg.override_duration_s, cfg.round_s, rng_ovr)
    channel = ReportChannel(rng_chan, cfg.report_loss, cfg.noise_std, cfg.lag_rounds, cfg.sample_every)
    overrides.start(fleet, 0.0)

    n_rounds = int(round((cfg.warmup_s + cfg.duration_s) / cfg.round_s))
    k, n_groups, r_ms = fleet.k, fleet.n_groups, int(round(cfg.round_s * 1000))
    t_s = np.arange(n_rounds) * cfg.round_s
    out = _series(n_rounds, n_groups, k)
    scored = t_s >= cfg.warmup_s - 1e-9
    first_scored = int(np.argmax(scored)) if scored.any() else n_rounds
    vector: tuple | None = None
    saturated = np.zeros(n_groups, dtype=int)
    for m in range(n_rounds):
        t, t_ms = float(t_s[m]), m * r_ms
        if m == first_scored:            # metrics count from the end of the warm-up
            fleet.reset_counters(t)
        if m > 0:
            overrides.step(fleet, t)
        fleet.step(t, *(vector if vector is not None else (None, None)))
        truth = fleet.group_aggregate()
        out["enabled"][m] = truth[:, :, 0] + truth[:, :, 1]
        out["achieved"][m] = out["enabled"][m].sum(axis=1)
        if not isinstance(loads, ConstantLoads):
            fleet.demand_kw = np.array(loads.advance(cfg.round_s, fleet.enabled_fraction()), dtype=float)
        channel.send(m, t_ms, fleet.gateway_reports())
        for ids, rep, ts in channel.deliver(m):
            groups.deliver(ids, rep, ts)
        p_on, p_off = np.full((n_groups, k), np.nan), np.full((n_groups, k), np.nan)
        for g, step in enumerate(groups.steps):
            out["goal"][m, g] = groups.goal.goal_kw(step.group, t_ms)
            try:
                rec = step.step(t_ms, t_ms + r_ms)
            except EstimatorError:        # nothing to act on: the group keeps its vector / fail-safe
                continue
            d = rec.decision
            p_on[g], p_off[g] = d.p_on, d.p_off
            saturated[g] += int(d.saturated and scored[m])
            out["estimate"][m, g] = d.expected_enabled_kw
            out["target"][m, g], out["p_on"][m, g], out["p_off"][m, g] = d.target_kw, d.p_on, d.p_off
        vector = (p_on, p_off)
    res = _result(cfg, fleet, fleet_kw, group_kw, groups, t_s, out, scored, saturated)
    res.metrics = scenario_metrics(res, fleet, refr, channel, int(saturated.sum()))
    return res


def _result(cfg, fleet, fleet_kw, group_kw, groups, t_s, out, scored, saturated) -> ScenarioResult:
    w = (group_kw / group_kw.sum())[None, :, None] if group_kw.sum() > 0 else 1.0 / len(group_kw)
    return ScenarioResult(
        config=cfg, tier_names=tier_names(fleet.k), fleet_kw=fleet_kw, base_kw=cfg.base * fleet_kw,
        capacity_kw=abs(cfg.amplitude) * fleet_kw, t_s=t_s, goal_kw=out["goal"].sum(axis=1),
        achieved_kw=out["achieved"].sum(axis=1), estimate_kw=out["estimate"].sum(axis=1),
        enabled_tier_kw=out["enabled"].sum(axis=1), target_tier_kw=out["target"].sum(axis=1),
        p_on=(out["p_on"] * w).sum(axis=1), p_off=(out["p_off"] * w).sum(axis=1),
        scored=scored, step_at_s=groups.step_at, group_names=groups.names, group_kw=group_kw,
        group_goal_kw=out["goal"], group_achieved_kw=out["achieved"], group_estimate_kw=out["estimate"],
        group_enabled_tier_kw=out["enabled"], group_target_tier_kw=out["target"],
        group_p_on=out["p_on"], group_p_off=out["p_off"], group_saturated=saturated)
