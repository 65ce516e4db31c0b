"""DLMPs on IEEE 13 (4 intervals, load shape 0.6/0.8/1.0/0.9): the lossless uncongested case, and
the envelope check — a finite change of the optimal pricing-LP objective brackets Σₜ DLMPₜ·Δtₜ."""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.network_data import CriticalSet
from market.lem.pricing import clear_dam, pricing_lp
from market.lem.schema import load_market

ISO = [30.0, 45.0, 80.0, 60.0]
MIXED = {
    "intervals": 4, "iso": {"import_price_usd_per_mwh": ISO},
    "offers": [{"id": "pv675", "location": "675.1", "steps": [{"price_usd_per_mwh": 5, "p_kw": 800},
                                                               {"price_usd_per_mwh": 20, "p_kw": 800}]},
               {"id": "g611", "location": "611.3", "steps": [{"price_usd_per_mwh": 55, "p_kw": 100}]}],
    "bids": [{"id": "d652", "location": "652.1", "steps": [{"price_usd_per_mwh": 70, "p_kw": 40},
                                                            {"price_usd_per_mwh": 35, "p_kw": 40}]}],
    "units": [{"id": "dg671", "location": "671", "p_min_kw": 100, "p_max_kw": 600, "price_usd_per_mwh": 50,
               "startup_usd": 5, "min_up_intervals": 2}],
    "storage": [{"id": "bat634", "location": "634.1", "p_charge_max_kw": 50, "p_discharge_max_kw": 50,
                 "e_max_kwh": 150, "soc_initial_kwh": 50}],
    "blocks": [{"id": "blk680", "location": "680", "price_usd_per_mwh": 40, "p_kw": 90, "first_interval": 1,
                "n_intervals": 2}],
}
CRITICAL = CriticalSet(["line.692675.1", "line.650632.3"], ["675.1", "611.3"])


def test_lossless_and_unconstrained_every_dlmp_is_the_energy_price(ieee13_net):
    c = clear_dam(load_market(MIXED), ieee13_net.without_losses())
    assert not c.slacks
    # marginal supplier at the substation is the ISO (enough headroom), so energy = ISO price
    assert np.allclose(c.prices.energy[0], ISO, atol=1e-6)
    assert np.allclose(c.prices.dlmp_usd_per_mwh, c.prices.energy, atol=1e-6)
    for part in (c.prices.loss, c.prices.congestion, c.prices.voltage):
        assert np.allclose(part, 0.0, atol=1e-9)


@pytest.fixture(scope="module")
def congested(ieee13_net):
    market = load_market(MIXED)
    return market, clear_dam(market, ieee13_net, CRITICAL)


def test_congested_case_uses_every_component(congested):
    _, c = congested
    p = c.prices
    assert np.max(np.abs(p.loss)) > 1.0 and np.max(np.abs(p.congestion)) > 1.0 and np.max(np.abs(p.voltage)) > 1.0
    assert np.allclose(p.energy + p.loss + p.congestion + p.voltage, p.dlmp_usd_per_mwh, atol=1e-6)
    assert c.pricing_objective_usd <= c.objective_usd + 1e-6


@pytest.mark.parametrize("location", ["675.1", "611.3", "652.1", "671.2", "634.1", "646.3"])
def test_envelope_finite_differences_bracket_the_dlmp(ieee13_net, congested, location):
    """f(D) convex in the fixed load D: (f(D) − f(D − ε))/ε ≤ Σₜ DLMPₜ·Δtₜ/1000 ≤ (f(D + ε) − f(D))/ε,
    with the integers of the clearing held (the pricing LP)."""
    market, c = congested
    eps = 0.5  # kW in every interval
    f0 = c.pricing_objective_usd
    up = pricing_lp(market, ieee13_net.with_extra_load(location, eps), CRITICAL, c.integers)[1]
    down = pricing_lp(market, ieee13_net.with_extra_load(location, -eps), CRITICAL, c.integers)[1]
    g = float(np.sum(c.prices.at(location)) * market.interval_h / 1000.0)
    tol = 1e-7 * max(1.0, abs(f0)) / eps
    assert (f0 - down) / eps - tol <= g <= (up - f0) / eps + tol, ((f0 - down) / eps, g, (up - f0) / eps)
    # and the bracket is tight here (no kink within ±ε): the price is the derivative
    assert abs((up - down) / (2 * eps) - g) < 1e-4 * max(1.0, abs(g))


def test_pricing_lp_re_solved_in_place_matches_a_fresh_build(ieee13_net, congested):
    """clear_dam re-solves the MIP's own HiGHS model as the LP; pricing_lp builds it afresh."""
    from market.lem.pricing import dlmp_components

    market, c = congested
    lp, obj = pricing_lp(market, ieee13_net, CRITICAL, c.integers)
    assert abs(obj - c.pricing_objective_usd) <= 1e-7 * max(1.0, abs(obj))
    assert np.allclose(dlmp_components(lp).dlmp_usd_per_mwh, c.prices.dlmp_usd_per_mwh, atol=1e-6)
