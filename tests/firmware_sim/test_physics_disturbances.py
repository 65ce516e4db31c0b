"""Device physics and disturbances against hand-computed values and long-run averages."""
import math

import numpy as np
import pytest

from firmware_sim.disturbances import DisturbanceError, OverrideProcess, ReportChannel
from firmware_sim.physics import AIR_CONDITIONER, WATER_HEATER, ConstantLoads, MixedLoads, ThermostaticLoads
from firmware_sim.vector_fleet import VectorFleet


def test_exact_exponential_step():
    loads = ThermostaticLoads(np.array([4.5]), WATER_HEATER, np.random.default_rng(0))
    loads.theta_c[:] = 50.0
    loads.call[:] = True
    loads.advance(60.0, np.array([1.0]))
    inf = WATER_HEATER.ambient_c + WATER_HEATER.swing_c
    expected = inf + (50.0 - inf) * math.exp(-60.0 / WATER_HEATER.tau_s)
    assert loads.theta_c[0] == pytest.approx(expected)


@pytest.mark.parametrize("params", [WATER_HEATER, AIR_CONDITIONER])
def test_uncontrolled_duty_matches_estimate(params):
    rng = np.random.default_rng(1)
    loads = ThermostaticLoads(np.full(400, 3.0), params, rng)
    duty = []
    for _ in range(int(6 * 3600 / 10)):
        loads.advance(10.0, np.ones(400))
        duty.append(loads.call.mean())
    # steady duty (set - ambient)/swing (within the band's spread)
    assert np.mean(duty[len(duty) // 2:]) == pytest.approx(loads.duty_estimate().mean(), abs=0.05)


def test_disabled_heater_keeps_calling():
    loads = ThermostaticLoads(np.full(50, 4.5), WATER_HEATER, np.random.default_rng(2))
    for _ in range(3600):
        loads.advance(10.0, np.zeros(50))
    assert loads.call.all()                              # cold, all demanding
    assert (loads.demand_kw() == 4.5).all()


def test_mixed_and_constant():
    rated = np.array([1.0, 2.0, 3.0])
    m = MixedLoads(rated, ["constant", "ac", "constant"], np.random.default_rng(0))
    assert m.demand_kw()[0] == 1.0 and m.demand_kw()[2] == 3.0
    assert ConstantLoads(rated).advance(2.0, np.zeros(3)).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="boiler"):
        MixedLoads(rated, ["boiler"] * 3, np.random.default_rng(0))


def test_override_process_keeps_fraction():
    f = VectorFleet(np.ones(20_000), (0.5, 0.3, 0.2), np.random.default_rng(0))
    o = OverrideProcess(0.1, 600.0, 2.0, np.random.default_rng(1))
    o.start(f, 0.0)
    fractions = []
    for m in range(1, 1200):
        o.step(f, m * 2.0)
        fractions.append(np.mean(f.override_until_s > m * 2.0))
    assert np.mean(fractions) == pytest.approx(0.1, abs=0.01)
    with pytest.raises(DisturbanceError, match="override_fraction"):
        OverrideProcess(1.0, 10.0, 2.0, np.random.default_rng(0))


def test_report_channel_loss_lag_sampling_noise():
    rep = np.ones((1000, 2, 4))
    ch = ReportChannel(np.random.default_rng(0), loss=0.2, lag_rounds=2)
    ch.send(0, 0, rep)
    assert ch.deliver(0) == [] and ch.deliver(1) == []
    [(ids, got, ts)] = ch.deliver(2)
    assert ts == 0 and got.shape == (ids.size, 2, 4)
    assert abs(ids.size - 800) < 60 and ch.lost == 1000 - ids.size
    s = ReportChannel(np.random.default_rng(0), sample_every=4)
    s.send(1, 2000, rep)
    [(ids, _, _)] = s.deliver(1)
    assert ids.size == 250 and np.all((ids + 1) % 4 == 0)
    n = ReportChannel(np.random.default_rng(0), noise_std=0.05)
    n.send(0, 0, rep)
    [(_, noisy, _)] = n.deliver(0)
    assert noisy.mean() == pytest.approx(1.0, abs=0.01) and noisy.std() == pytest.approx(0.05, abs=0.01)
    with pytest.raises(DisturbanceError, match="lag_rounds"):
        ReportChannel(np.random.default_rng(0), lag_rounds=-1)
