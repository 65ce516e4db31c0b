"""Equilibrium check (d): every participant, self-scheduling alone against the DLMPs of the pricing run
(commitments, block acceptances and storage modes as cleared), can do no better than its cleared
quantity — on IEEE 13 with the generated offers (complex blocks, energy limits, a bilateral schedule)."""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.equilibrium import equilibrium_gaps, self_schedules
from market.lem.network_data import CriticalSet
from market.lem.offers import generate_offers
from market.lem.pricing import Prices, clear_dam
from market.lem.schema import load_market

from tests.market.lem.conftest import IEEE13


@pytest.fixture(scope="module")
def cleared(ieee13_net):
    from market.network import load_dss

    market = load_market(generate_offers(load_dss(IEEE13)[0], seed=3, intervals=4, density=1.5))
    assert market.bilaterals and any(b.parent for b in market.blocks)
    critical = CriticalSet(["line.650632.1", "line.670671.1", "line.692675.1"], ["675.1", "611.3", "652.1"])
    c = clear_dam(market, ieee13_net, critical)
    return market, c


def test_every_participant_self_schedules_to_its_cleared_quantity(cleared, ieee13_net):
    market, c = cleared
    rows = self_schedules(market, ieee13_net, c)
    n = len(market.offers) + len(market.bids) + len(market.units) + len(market.storage) + len(market.blocks) + 1
    assert len(rows) == n
    assert equilibrium_gaps(market, ieee13_net, c) == []
    assert any(abs(s.cleared_profit_usd) > 1.0 for s in rows)   # the check is not vacuous
    # prices not all equal: the network rows bind (else the test says little about DLMPs)
    assert float(np.ptp(c.prices.dlmp_usd_per_mwh)) > 1.0


def test_the_check_detects_prices_that_do_not_support_the_dispatch(cleared, ieee13_net):
    market, c = cleared
    p = c.prices
    shifted = Prices(p.locations, p.dlmp_usd_per_mwh + 40.0, p.energy + 40.0, p.loss, p.congestion, p.voltage)
    wrong = type(c)(**{**c.__dict__, "prices": shifted})
    gaps = equilibrium_gaps(market, ieee13_net, wrong)
    assert gaps and all(g.gap_usd > 0 for g in gaps)
