"""Metrics of a finished scenario run (scored rounds only), as one flat dict of named figures.

Figures (units in the names or dimensionless):
  rms_pct_of_capacity   RMS(achieved - goal) / (|amplitude| · D) · 100   (absent when amplitude = 0)
  rms_pct_of_demand     RMS(achieved - goal) / D · 100
  pjm_score, pjm_correlation, pjm_delay, pjm_precision, pjm_windows  (regulation/ramp/step, when
                        the goal moves; signal = (goal - base) / capacity, response likewise)
  fairness_on_time_std  largest per-tier std of per-device on-time fraction (non-black tiers)
  on_time_std_<tier>, on_time_mean_<tier>
  switches_per_device_hour
  step_settle_s, step_error_pct_after_2_refractory   (step scenario; % of the goal after the step)
  saturated_rounds, reports_sent, reports_lost
  groups                {group: {fleet_demand_kw, rms_pct_of_demand, mean_abs_error_kw,
                        rms_pct_of_capacity, pjm_*, saturated_rounds}} with several control groups
"""
from __future__ import annotations

import numpy as np

from cloud.estimator import RefractoryParams
from cloud.metrics import (MetricsError, on_time_std_per_tier, pjm_score, rms_pct_of_capacity,
                           settling_time_s, switches_per_device_hour)

STEP_TOLERANCE = 0.02   # "error below 2 %" of the goal


def tracking_figures(t, goal_kw, achieved_kw, demand_kw: float, base_kw: float, capacity_kw: float) -> dict:
    """Tracking figures of one series (the fleet, or one control group) over its scored rounds."""
    g, a = goal_kw, achieved_kw
    m: dict = {
        "fleet_demand_kw": demand_kw,
        "rms_pct_of_demand": rms_pct_of_capacity(g, a, demand_kw),
        "mean_abs_error_kw": float(np.mean(np.abs(a - g))),
    }
    if capacity_kw > 0:
        m["rms_pct_of_capacity"] = rms_pct_of_capacity(g, a, capacity_kw)
        try:
            p = pjm_score((g - base_kw) / capacity_kw, (a - base_kw) / capacity_kw, t)
            m.update(pjm_score=p.score, pjm_correlation=p.correlation, pjm_delay=p.delay,
                     pjm_precision=p.precision, pjm_windows=p.windows)
        except MetricsError:
            pass   # constant goal in every window (e.g. a short step run): no PJM figures
    return m


def group_figures(res) -> dict:
    """{group: tracking figures + saturated_rounds} for a run with several control groups."""
    s, cfg = res.scored, res.config
    out = {}
    for g, name in enumerate(res.group_names):
        d = float(res.group_kw[g])
        m = tracking_figures(res.t_s[s], res.group_goal_kw[s, g], res.group_achieved_kw[s, g], d,
                             cfg.base * d, abs(cfg.amplitude) * d)
        m["saturated_rounds"] = int(res.group_saturated[g])
        out[name] = m
    return out


def scenario_metrics(res, fleet, refr: RefractoryParams, channel, saturated: int) -> dict:
    s = res.scored
    if not s.any():
        raise MetricsError("no scored rounds (duration shorter than one round?)")
    duration_s = float(s.sum() * res.config.round_s)
    m = tracking_figures(res.t_s[s], res.goal_kw[s], res.achieved_kw[s], res.fleet_kw, res.base_kw,
                         res.capacity_kw)
    on_time = fleet.on_time_fraction()
    kw = fleet.slice_kw()
    per_tier = on_time_std_per_tier(on_time, kw)
    m["fairness_on_time_std"] = float(per_tier[:-1].max()) if per_tier.size > 1 else 0.0
    for i, name in enumerate(res.tier_names):
        m[f"on_time_std_{name}"] = float(per_tier[i])
        m[f"on_time_mean_{name}"] = float(on_time[kw[:, i] > 0, i].mean()) if (kw[:, i] > 0).any() else 0.0
    m["switches_per_device_hour"] = switches_per_device_hour(fleet.switches, duration_s)
    if res.step_at_s is not None:
        m.update(_step_figures(res, refr))
    m["saturated_rounds"] = int(saturated)
    m["reports_sent"] = int(channel.sent)
    m["reports_lost"] = int(channel.lost)
    if len(res.group_names) > 1:
        m["groups"] = group_figures(res)
    return m


def _step_figures(res, refr: RefractoryParams) -> dict:
    after = res.t_s >= res.step_at_s
    goal_after = float(res.goal_kw[after][-1])
    tol = STEP_TOLERANCE * goal_after
    out: dict = {"step_size_kw": goal_after - float(res.goal_kw[~after][-1]) if (~after).any() else 0.0}
    two_refr = 2.0 * max(refr.t_ef_s + refr.t_ev_s, refr.t_df_s + refr.t_dv_s)
    late = res.t_s >= res.step_at_s + two_refr
    if late.any():
        err = np.abs(res.achieved_kw[late] - res.goal_kw[late])
        out["step_error_pct_after_2_refractory"] = float(100.0 * err.max() / goal_after)
    try:
        out["step_settle_s"] = settling_time_s(res.t_s, res.goal_kw, res.achieved_kw, res.step_at_s, tol)
    except MetricsError:
        out["step_settled"] = False
    return out
