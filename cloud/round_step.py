"""One control round for one group: estimate → goal → control law → decision record.

The MQTT controller (`cloud.rounds.ControllerCore`) and the vectorized simulator
(`firmware_sim.scenario`) both run every group's round through `GroupRound.step`, so what the
simulator measures is what the service does:

    step = GroupRound("671.1", goal, ControlParams(round_s=2.0), estimator)
    rec = step.step(now_ms, apply_ms, fallback_kw=snapshot_kw)    # RoundDecision
    rec.decision.p_on, rec.decision.p_off                          # the vector to send

1. Estimate: the fleet state (k, 4) kW at the switching instant `apply_ms` of the round being
   controlled, predicted by the group's `FleetEstimator` from the reports it holds (times `scale`,
   e.g. for sampled-out gateways); `fallback_kw` (the scaled snapshot) when there is no estimator
   or it cannot predict; an explicit `state_kw` overrides both.
2. Goal: `cloud.goals.evaluate(goal, group, now_ms, demand_kw=Σ state)` — kW and source.
3. Recovery ramp: after a (re)start (a new `GroupRound`) or `recover()` (the controller calls it
   when gateways come back from fail-safe or control was interrupted), the goal handed to the law
   is limited to  E ± r,  E = enabled kW of the estimate, r = `params.ramp_share_per_round` × the
   group's demand (Σ state), and the law's probabilities are then scaled down so that what can
   actually switch stays within r even when the estimate's split between flexible and
   refractory demand is wrong (`bound_switching`): Σ p_off·(EF+ER) ≤ r and Σ p_on·(DF+DR) ≤ r
   over the sheddable tiers — every enabled kW that may be flexible at the switching instant
   (after a fail-safe most of it is refractory in the reports and turns flexible within a
   round, a timing no estimator history explains). The fleet reaches the goal in about
   ⌈|g − E| / r⌉ rounds. Recovery ends after `CALM_ROUNDS` (2) consecutive rounds whose feasible
   goal lies within r of E and in which every live gateway's report was fresh (`fresh=True`), so
   one misleading estimate (a few gateways reported yet, the rest carried or scaled) cannot end
   it; from then on the goal is tracked unlimited (normal tracking is not slowed).
   `ramp_share_per_round` = 0 turns the ramp off.
4. Control law: `compute_control(state, law_goal_kw, params)`.
5. Decision record: the estimator remembers what was sent for `apply_ms` (its next prediction
   replays it); the `RoundDecision` is returned for logs, CSVs and metrics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from cloud.control_law import DF, DR, EF, ER, ControlDecision, ControlParams, compute_control, tier_targets
from cloud.estimator import EstimatorError, FleetEstimator
from cloud.goals import GoalSchedule, GoalValue, evaluate

log = logging.getLogger("colorgrid.cloud.round")

CALM_ROUNDS = 2     # consecutive fresh rounds within one ramp step of the goal that end a recovery


@dataclass
class RoundDecision:
    """What one group's round decided, and from what."""

    group: str
    t_ms: int                   # when the decision was made (UTC epoch ms)
    apply_ms: int               # the switching instant it is for
    goal: GoalValue             # goal kW and its source
    state_kw: np.ndarray        # (k, 4) estimate the law acted on
    estimated: bool             # True: the estimator's prediction; False: the fallback/given state
    decision: ControlDecision
    law_goal_kw: float = float("nan")   # the goal the law acted on (the recovery ramp's when ramped)
    ramped: bool = False        # True: the round was in recovery (its goal and switching bounded)


class GroupRound:
    """A control group's round step (module docstring); `estimator` may be set or replaced later."""

    def __init__(self, group: str, goal: GoalSchedule, params: ControlParams,
                 estimator: FleetEstimator | None = None, predict: bool = True) -> None:
        self.group, self.goal, self.params = group, goal, params
        self.estimator, self.predict = estimator, predict
        self.recovering = True          # a new round step is a (re)start: ramp to the goal
        self.recoveries = 0             # recover() calls (fail-safe periods, control gaps)
        self._calm = 0                  # consecutive fresh rounds within one step of the goal

    def recover(self, reason: str = "") -> None:
        """Ramp back to the goal from the next round on (gateways were in fail-safe, or the
        group went without control): see step 3 of the module docstring."""
        if not self.recovering:
            log.info("group %s: recovery ramp (%s)", self.group, reason or "requested")
            self.recoveries += 1
        self.recovering = True
        self._calm = 0

    def ramp_goal(self, state: np.ndarray, goal_kw: float, fresh: bool = True) -> tuple[float, bool]:
        """(goal for the law, in recovery?) — the recovery ramp (module docstring, step 3).
        `fresh`: every live gateway of the group reported this round (none carried forward or
        missing); a recovery only ends on fresh rounds."""
        share = self.params.ramp_share_per_round
        if not self.recovering or share <= 0.0:
            self.recovering = False
            return goal_kw, False
        step_kw = share * float(state.sum())
        enabled = float(state[:, EF].sum() + state[:, ER].sum())
        _, feasible, _ = tier_targets(state, goal_kw)
        gap = feasible - enabled
        if abs(gap) <= step_kw:
            self._calm = self._calm + 1 if fresh else 0
            if self._calm >= CALM_ROUNDS:
                self.recovering = False
                log.info("group %s: recovery ramp done, tracking the goal", self.group)
                return goal_kw, False
            return goal_kw, True
        self._calm = 0
        return enabled + (step_kw if gap > 0 else -step_kw), True

    def bound_switching(self, state: np.ndarray, decision: ControlDecision) -> ControlDecision:
        """In recovery: scale p_off (p_on) of the sheddable tiers so that Σ p_off·(EF+ER) and
        Σ p_on·(DF+DR) stay within one ramp step (module docstring, step 3); the black tier
        (never shed, p_on = 1) is left as the law set it. on_kw / off_kw are recomputed on the
        estimate's EF / DF, which is what the estimator replays."""
        r = self.params.ramp_share_per_round * float(state.sum())
        sheddable = slice(0, state.shape[0] - 1)
        p_on, p_off = decision.p_on.copy(), decision.p_off.copy()
        worst_off = float(np.dot(p_off[sheddable], state[sheddable, EF] + state[sheddable, ER]))
        worst_on = float(np.dot(p_on[sheddable], state[sheddable, DF] + state[sheddable, DR]))
        if worst_off <= r + 1e-12 and worst_on <= r + 1e-12:
            return decision
        if worst_off > r:
            p_off[sheddable] *= r / worst_off
        if worst_on > r:
            p_on[sheddable] *= r / worst_on
        on_kw, off_kw = p_on * state[:, DF], p_off * state[:, EF]
        expected = float(np.sum(state[:, EF] + state[:, ER] + on_kw - off_kw))
        return replace(decision, p_on=p_on, p_off=p_off, on_kw=on_kw, off_kw=off_kw,
                       expected_enabled_kw=expected)

    def estimate(self, now_ms: int, apply_ms: int, fallback_kw: np.ndarray | None = None,
                 scale: float = 1.0) -> tuple[np.ndarray, bool]:
        """(state (k, 4) kW, from the estimator?); EstimatorError when there is nothing to act on."""
        if self.predict and self.estimator is not None:
            try:
                return self.estimator.predict(apply_ms, now_ms) * scale, True
            except EstimatorError as exc:
                if fallback_kw is None:
                    raise
                log.info("group %s: %s; using the snapshot", self.group, exc)
        if fallback_kw is None:
            raise EstimatorError(f"group {self.group}: no estimator prediction and no snapshot")
        return np.asarray(fallback_kw, dtype=float), False

    def step(self, now_ms: int, apply_ms: int, fallback_kw: np.ndarray | None = None,
             scale: float = 1.0, state_kw: np.ndarray | None = None, fresh: bool = True) -> RoundDecision:
        """Run the round; GoalError / EstimatorError / ControlInputError propagate (the caller
        decides what a group without a decision does: no vector this round). `fresh`: every
        live gateway of the group reported this round (a recovery ends only on fresh rounds)."""
        if state_kw is not None:
            state, estimated = np.asarray(state_kw, dtype=float), False
        else:
            state, estimated = self.estimate(now_ms, apply_ms, fallback_kw, scale)
        goal = evaluate(self.goal, self.group, now_ms, float(state.sum()))
        law_goal, ramped = self.ramp_goal(state, goal.kw, fresh)
        decision = compute_control(state, law_goal, self.params)
        if ramped:
            decision = self.bound_switching(state, decision)
        if self.estimator is not None:
            self.estimator.record_decision(apply_ms, decision)
        return RoundDecision(self.group, int(now_ms), int(apply_ms), goal, state, estimated, decision,
                             float(law_goal), ramped)
