"""The cloud control law: from an estimated per-tier state and a goal to per-tier p_on / p_off.

Pure numpy function, no I/O, no clock. Vocabulary (pinned, see docs/concepts.md):

* k tiers, index 0 = "green" (shed first) ... index k-1 = "black" (never disabled);
* `state_kw` is a (k, 4) array of kW per tier in the columns EF, ER, DF, DR
  (enabled-flexible, enabled-refractory, disabled-flexible, disabled-refractory);
* the goal `g` is the total enabled kW wanted (EF + ER summed over tiers).

`state_kw` must describe the fleet **at the switching instant of the round being controlled**
(after that round's refractory timers expired). With a fresh report that is the report itself
plus the expected timer expiry; with a lagged report it is the estimator's one-round-ahead
prediction that already contains the demand committed to switch by the control vectors sent
since the report (`cloud.estimator.FleetEstimator.predict`). The law itself never double-counts:
it only acts on the gap between the target and that predicted enabled demand.

Steps (ARCHITECTURE §2; priority: goal tracking > tier priority > fairness > device cycling):

1. Feasibility. Refractory demand cannot move this round and the black tier is always enabled, so
   enabled demand can only lie in  [E_min, E_max] = [ΣER + EF_black + DF_black, Σ(ER + EF + DF)].
   The goal is clipped to it (graceful saturation; `saturated` reports the clip).
2. Tier priority. Every tier keeps its fixed part lo_i (ER_i; all of ER+EF+DF for black); the
   remainder g - Σ lo_i is handed out from black down to green, each tier taking at most its movable
   part EF_i + DF_i.  Result: target enabled kW T_i per tier, Σ T_i = g_clipped.
3. Tracking. Gap Δ_i = T_i - E_i with E_i = EF_i + ER_i. If Δ_i > 0 switch on α·Δ_i of DF_i,
   if Δ_i < 0 switch off α·|Δ_i| of EF_i (α = `alpha`, 1 for a fresh or predicted estimate).
   These moves are split into the net tracking move (Σ on - Σ off, taken from the tiers in
   priority order: switched on from black down, off from green up) and a net-zero tier
   rebalancing move (on in a higher tier, off in a lower one, e.g. when a yellow slice becomes
   flexible again while green still runs). The net move is never limited. The rebalancing turns
   EF into DR and DF into ER, i.e. it spends the flexibility that the next reversal of the goal
   needs; as goal tracking outranks tier priority it is scaled down (one factor for all tiers) so
   that it keeps EF_i >= ρ·(EF_i + ER_i) and DF_i >= ρ·(DF_i + DR_i) (the reserve of step 4).
   Tier order is then restored geometrically over a few rounds once refractory demand expires.
4. Fairness. In a partly served tier the disabled share must rotate: add an equal swap
   s_i = (total_i - T_i) · round_s / H  switched on AND off (net zero), so that within the
   horizon H (`fairness_horizon_s`) the disabled demand has been replaced once. The swap is
   bounded by what flexibility is left (DF_i - on_i, EF_i - off_i) and by the device-cycling cap:
   (on_i + off_i + 2 s_i) / total_i · 3600 / round_s <= `max_switches_per_device_hour`
   (the cap only limits the swap: tracking outranks cycling). Flexibility reserve: the swap turns
   EF into DR and DF into ER, i.e. it spends the demand that could follow the next reversal of the
   goal. It may not take a tier's EF below ρ·(EF_i + ER_i) nor its DF below ρ·(DF_i + DR_i)
   (ρ = `flex_reserve_share`), so a fraction ρ of the enabled and of the disabled demand stays
   movable in both directions for tracking (tracking itself is never limited by the reserve).
5. Probabilities. p_off_i = off_i / EF_i, p_on_i = on_i / DF_i, clipped to [0, 1] (0 when the
   denominator is 0). Black tier: p_off = 0 and p_on = 1, whatever the arithmetic says.

The precision limit is statistical: the switched power has variance Σ P² p (1 - p), so the relative
error shrinks like 1/√n with the number of slices n.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_agent.states import DF, DR, EF, ER  # noqa: F401  (re-exported: cloud.control_law.EF ...)


class ControlInputError(ValueError):
    """Invalid input to the control law (message names the field)."""


@dataclass(frozen=True)
class ControlParams:
    """Tuning of the control law (units in the names; see docs/concepts.md)."""

    alpha: float = 1.0                       # share of the tracking gap switched per round
    round_s: float = 2.0                     # round length, s
    fairness_horizon_s: float = 400.0        # H: disabled demand rotated once per H, s
    max_switches_per_device_hour: float = 10.0  # cap on the fairness swap, switches/slice/h
    flex_reserve_share: float = 0.5          # ρ: share of enabled / disabled kW the swap keeps flexible
    ramp_share_per_round: float = 0.03       # recovery ramp: after a (re)start or fail-safe, enabled
    #                                          demand moves ≤ this share of demand per round (0: off)

    def __post_init__(self) -> None:
        if not (0.0 < self.alpha <= 1.0):
            raise ControlInputError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if not (self.round_s > 0.0):
            raise ControlInputError(f"round_s must be > 0, got {self.round_s!r}")
        if not (self.fairness_horizon_s > 0.0):
            raise ControlInputError(f"fairness_horizon_s must be > 0, got {self.fairness_horizon_s!r}")
        if not (self.max_switches_per_device_hour >= 0.0):
            raise ControlInputError(
                f"max_switches_per_device_hour must be >= 0, got {self.max_switches_per_device_hour!r}")
        if not (0.0 <= self.flex_reserve_share <= 1.0):
            raise ControlInputError(f"flex_reserve_share must be in [0, 1], got {self.flex_reserve_share!r}")
        if not (0.0 <= self.ramp_share_per_round <= 1.0):
            raise ControlInputError(
                f"ramp_share_per_round must be in [0, 1], got {self.ramp_share_per_round!r}")


DEFAULT_PARAMS = ControlParams()


@dataclass(frozen=True)
class ControlDecision:
    """Output of `compute_control`; all arrays have shape (k,), kW or probabilities."""

    p_on: np.ndarray
    p_off: np.ndarray
    target_kw: np.ndarray            # per-tier enabled target T_i
    goal_clipped_kw: float           # goal after the feasibility clip
    saturated: bool                  # True when the goal was outside [E_min, E_max]
    on_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))    # kW switched on (incl. swap)
    off_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))   # kW switched off (incl. swap)
    swap_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fairness swap part
    rebalance_kw: float = 0.0         # kW moved between tiers (on in a higher, off in a lower one)
    expected_enabled_kw: float = 0.0  # Σ (E_i + on_i - off_i) if the fleet switches as asked


def check_state(state_kw, name: str = "state_kw") -> np.ndarray:
    """Validate a (k, 4) kW state array (k >= 1, finite, >= 0) and return it as float64."""
    arr = np.asarray(state_kw, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 1:
        raise ControlInputError(f"{name} must have shape (k, 4) with k >= 1, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ControlInputError(f"{name} contains non-finite values")
    if np.any(arr < 0.0):
        raise ControlInputError(f"{name} contains negative kW")
    return arr


def tier_targets(state_kw: np.ndarray, goal_kw: float) -> tuple[np.ndarray, float, bool]:
    """Steps 1-2: feasibility clip and fill from black down. Returns (T, g_clipped, saturated)."""
    k = state_kw.shape[0]
    lo = state_kw[:, ER].copy()
    movable = state_kw[:, EF] + state_kw[:, DF]
    lo[k - 1] += movable[k - 1]            # black: everything that can be enabled is enabled
    movable[k - 1] = 0.0
    e_min = float(lo.sum())
    e_max = e_min + float(movable.sum())
    g = min(max(goal_kw, e_min), e_max)
    saturated = bool(goal_kw < e_min or goal_kw > e_max)
    target = lo.copy()
    remaining = g - e_min
    for i in range(k - 1, -1, -1):
        take = min(remaining, movable[i])
        target[i] += take
        remaining -= take
    return target, g, saturated


def compute_control(state_kw, goal_kw: float, params: ControlParams | None = None) -> ControlDecision:
    """Per-tier p_on/p_off that move enabled demand to `goal_kw` (see module docstring)."""
    p = params or DEFAULT_PARAMS
    x = check_state(state_kw)
    goal = float(goal_kw)
    if not np.isfinite(goal):
        raise ControlInputError(f"goal_kw must be finite, got {goal_kw!r}")
    k = x.shape[0]
    ef, er, df, dr = x[:, EF], x[:, ER], x[:, DF], x[:, DR]
    target, g, saturated = tier_targets(x, goal)

    # step 3: tracking (net move) and tier rebalancing (net-zero move, within the reserve)
    gap = target - (ef + er)
    on = np.clip(p.alpha * np.maximum(gap, 0.0), 0.0, df)
    off = np.clip(p.alpha * np.maximum(-gap, 0.0), 0.0, ef)
    rho = p.flex_reserve_share
    on, off, rebalance = _limit_rebalance(on, off, ef, er, df, dr, rho)

    # step 4: fairness swap in partly served tiers, bounded by leftover flexibility and the cap
    total = ef + er + df + dr
    swap = np.maximum(total - target, 0.0) * (p.round_s / p.fairness_horizon_s)
    cap_kw = p.max_switches_per_device_hour * total * p.round_s / 3600.0
    swap = np.minimum(swap, np.maximum(cap_kw - on - off, 0.0) / 2.0)
    swap = np.minimum(swap, np.maximum(df - on - rho * (df + dr), 0.0))
    swap = np.minimum(swap, np.maximum(ef - off - rho * (ef + er), 0.0))
    swap[k - 1] = 0.0
    on = on + swap
    off = off + swap

    # step 5: probabilities
    p_on = _ratio(on, df)
    p_off = _ratio(off, ef)
    p_off[k - 1] = 0.0
    p_on[k - 1] = 1.0
    on[k - 1] = df[k - 1]
    off[k - 1] = 0.0
    expected = float(np.sum(ef + er + on - off))
    return ControlDecision(p_on=p_on, p_off=p_off, target_kw=target, goal_clipped_kw=g,
                           saturated=saturated, on_kw=on, off_kw=off, swap_kw=swap,
                           rebalance_kw=rebalance,
                           expected_enabled_kw=expected)


def _net_part(amounts: np.ndarray, net: float, order) -> np.ndarray:
    """Take `net` kW out of `amounts`, tier by tier in `order` (the tracking part)."""
    out = np.zeros_like(amounts)
    left = net
    for i in order:
        out[i] = min(amounts[i], left)
        left -= out[i]
    return out


def _limit_rebalance(on, off, ef, er, df, dr, rho):
    """Split the per-tier moves into the net tracking move and a net-zero rebalancing move
    (on in a higher tier, off in a lower one) and scale the rebalancing down so it leaves
    a share rho of each tier's enabled demand in EF and of its disabled demand in DF.
    Returns (on, off, kW rebalanced)."""
    k = on.size
    net = float(on.sum() - off.sum())
    if net >= 0.0:
        t_on, t_off = _net_part(on, net, range(k - 1, -1, -1)), np.zeros_like(off)
    else:
        t_on, t_off = np.zeros_like(on), _net_part(off, -net, range(k))
    r_on, r_off = on - t_on, off - t_off
    if r_on.sum() <= 0.0:
        return on, off, 0.0
    room_on = np.maximum(df - t_on - rho * (df + dr), 0.0)
    room_off = np.maximum(ef - t_off - rho * (ef + er), 0.0)
    lam = 1.0
    for need, room in ((r_on, room_on), (r_off, room_off)):
        pos = need > 1e-12
        if pos.any():
            lam = min(lam, float(np.min(room[pos] / need[pos])))
    lam = max(lam, 0.0)
    return t_on + lam * r_on, t_off + lam * r_off, float(lam * r_on.sum())


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0.0)
    return np.clip(out, 0.0, 1.0)


def expected_after_switch(state_kw, p_on, p_off) -> np.ndarray:
    """Expected (k, 4) state after step 2 of a round applied to `state_kw` with p_on/p_off.

    EF→DR moves p_off·EF, DF→ER moves p_on·DF (expectation of the pinned per-slice draws).
    """
    x = check_state(state_kw).copy()
    k = x.shape[0]
    p_on = np.clip(np.asarray(p_on, dtype=float).reshape(k), 0.0, 1.0)
    p_off = np.clip(np.asarray(p_off, dtype=float).reshape(k), 0.0, 1.0)
    off = x[:, EF] * p_off
    on = x[:, DF] * p_on
    x[:, EF] -= off
    x[:, DR] += off
    x[:, DF] -= on
    x[:, ER] += on
    return x
