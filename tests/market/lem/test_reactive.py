"""Reactive capability and the reactive price (USD/Mvarh) from the duals, checked by finite differences
of the pricing LP's optimal objective: a fixed reactive injection ±ε kvar at a location changes it by
∓ε·Σₜ q_priceₜ·Δtₜ/1000 (IEEE 13, 4 intervals, two voltage rows and two line rows in the model)."""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.pricing import clear_dam, pricing_lp
from market.lem.schema import load_market

from tests.market.lem.test_ieee13_prices import CRITICAL, MIXED

Q_RANGE = 15.0   # kvar: small enough that the inverter's capability runs out where a voltage row binds


def _doc(probe_at: str, q: float) -> dict:
    offers = [dict(MIXED["offers"][0], q_min_kvar=-Q_RANGE, q_max_kvar=Q_RANGE), *MIXED["offers"][1:],
              {"id": "probe", "location": probe_at, "steps": [{"price_usd_per_mwh": 5000.0, "p_kw": 0.001}],
               "q_min_kvar": q, "q_max_kvar": q}]
    return dict(MIXED, offers=offers)


@pytest.fixture(scope="module")
def base(ieee13_net):
    c = clear_dam(load_market(_doc("675.1", 0.0)), ieee13_net, CRITICAL)
    return c


def test_reactive_dispatch_and_prices_exist(base):
    q = base.prices.q_price_usd_per_mvarh
    assert q is not None and q.shape == base.prices.dlmp_usd_per_mwh.shape and np.all(np.isfinite(q))
    assert np.max(np.abs(q)) > 1.0                                   # a voltage row binds: Q is worth something
    assert set(base.schedule_kvar) == {"pv675", "probe"}
    assert np.all(np.abs(base.schedule_kvar["pv675"]) <= Q_RANGE + 1e-9)
    assert np.max(np.abs(base.schedule_kvar["pv675"])) > 1.0        # the inverter is used


@pytest.mark.parametrize("location", ["675.1", "611.3", "652.1", "634.1", "671.2"])
def test_finite_differences_match_the_reactive_price(ieee13_net, base, location):
    eps = 0.5   # kvar in every interval
    c0 = base if location == "675.1" else clear_dam(load_market(_doc(location, 0.0)), ieee13_net, CRITICAL)
    mk = load_market(_doc(location, 0.0))
    f0 = c0.pricing_objective_usd
    up = pricing_lp(load_market(_doc(location, eps)), ieee13_net, CRITICAL, c0.integers)[1]
    down = pricing_lp(load_market(_doc(location, -eps)), ieee13_net, CRITICAL, c0.integers)[1]
    g = float(np.sum(c0.prices.q_price_usd_per_mvarh[c0.prices.locations.index(location)]) * mk.interval_h / 1000.0)
    # injecting more Q lowers the cost by the price: (f(−ε) − f(0))/ε ≥ g ≥ (f(0) − f(+ε))/ε (convexity)
    tol = 1e-7 * max(1.0, abs(f0)) / eps
    assert (f0 - up) / eps - tol <= g <= (down - f0) / eps + tol, ((f0 - up) / eps, g, (down - f0) / eps)
    assert abs((down - up) / (2 * eps) - g) < 1e-4 * max(1.0, abs(g))
