"""The estimator's prediction (timer expiry + vectors already sent) against the vectorized fleet.

Closed loop on 30k devices; at check rounds the controller predicts the state at the next
switching instant, then sends an all-zero vector so that the fleet's state after that round IS
the state after its timers: prediction and truth must agree to within a few tenths of a percent of
the fleet's kW, with a fresh and with a one-round-old report.
"""
import numpy as np
import pytest

from cloud.control_law import ControlDecision, compute_control
from cloud.estimator import FleetEstimator
from firmware_sim.vector_fleet import VectorFleet

ROUND_MS = 2000


def zero_decision(k):
    z = np.zeros(k)
    return ControlDecision(p_on=z, p_off=z, target_kw=z, goal_clipped_kw=0.0, saturated=False,
                           on_kw=z, off_kw=z, swap_kw=z)


@pytest.mark.parametrize("lag", [0, 1])
def test_prediction_matches_fleet_after_timers(lag):
    rng = np.random.default_rng(5)
    fleet = VectorFleet(rng.uniform(1, 5, 30_000), (0.45, 0.45, 0.1), np.random.default_rng(6))
    total = fleet.rated_kw.sum()
    est = FleetEstimator(k=3, round_s=2.0, max_age_s=10.0)
    pending = []
    vector = None
    errors = []
    for m in range(160):
        t_ms = m * ROUND_MS
        fleet.step(t_ms / 1000.0, *(vector if vector else (None, None)))
        truth = fleet.aggregate()
        if m in (91, 111, 131, 151):           # the round after a check: state after timers
            errors.append(np.abs(truth - expected).max() / total)
        pending.append((fleet.gateway_reports(), t_ms))
        if len(pending) > lag:
            rep, ts = pending.pop(0)
            est.update(np.arange(rep.shape[0]), rep, ts)
        if m < lag:
            continue
        pred = est.predict(t_ms + ROUND_MS, now_ms=t_ms)
        if m in (90, 110, 130, 150):
            expected = pred
            d = zero_decision(3)
        else:
            goal = total * (0.5 + 0.15 * np.sin(2 * np.pi * m / 45.0))
            d = compute_control(pred, goal)
        est.record_decision(t_ms + ROUND_MS, d)
        vector = (d.p_on, d.p_off)
    assert len(errors) == 4
    assert max(errors) < 0.004, errors
