"""Critical set vs every limit from the start (issue 15 Targets): the iteration with the AC power flow
must give the same schedule either way.

Case: IEEE 13 at 0.55 of its load in the evening hours 15–20, the generated market (seed 1), line
632670 rated 300 A (binding). Why they used to differ: (1) "converged" stopped at the first schedule
without AC violations, linearised wherever the *previous* schedule was — the critical-set run had
re-linearised once (it had a violation to add), the every-limit run not at all (no violation), so
their loss factors and PTDFs came from different points; (2) rows that the AC solution keeps inside
the true rating but above the tightened one (rating × (1 − margin)) bind in the every-limit model and
never joined the critical set. Now rows at the tightened limits join, and "converged" needs the
linearisation to be the schedule's own (schedule or objective unchanged since the previous clearing).
"""
from __future__ import annotations

import numpy as np
import pytest

from market.lem.iteration import clear_with_ac
from market.lem.network_data import CriticalSet
from market.lem.offers import generate_offers
from market.lem.profiles import load_shape
from market.lem.schema import load_market

from tests.market.lem.conftest import IEEE13

HOURS = slice(15, 21)
SCALE = 0.55
RATING_A = 300.0


@pytest.fixture(scope="module")
def case():
    from market.network import load_dss

    feeder = load_dss(IEEE13)[0]
    feeder.set_rating("line.632670", norm_amps=RATING_A)
    shape = [SCALE * x for x in load_shape(24, None)[HOURS]]
    market = load_market(generate_offers(feeder, 1, len(shape), 1.0))
    return feeder, market, shape


def _both(case, **kw):
    feeder, market, shape = case
    crit = clear_with_ac(market, feeder, shape, **kw)
    every = crit.net.all_rows()
    full = clear_with_ac(market, feeder, shape, critical=CriticalSet(list(every.lines), list(every.voltages)), **kw)
    gap = max(float(np.max(np.abs(crit.clearing.schedule_kw[k] - full.clearing.schedule_kw[k])))
              for k in crit.clearing.schedule_kw)
    return crit, full, gap


def test_critical_set_and_every_limit_give_the_same_schedule(case):
    crit, full, gap = _both(case)
    assert crit.status == "converged" and full.status == "converged"
    assert "line.632670.1" in crit.critical.lines or "line.632670.2" in crit.critical.lines \
        or "line.632670.3" in crit.critical.lines
    assert len(crit.critical.lines) + len(crit.critical.voltages) < len(crit.net.all_rows().lines)
    assert crit.clearing.objective_usd == pytest.approx(full.clearing.objective_usd, rel=1e-5)
    assert gap < 0.05  # kW, every resource and interval (the fixed-point tolerance leaves ~1e-3 kW)
    for pt in crit.points:  # and the schedule is within every limit in the AC power flow
        assert not pt.snapshot.overloaded_branches() and not pt.snapshot.voltage_violations()


def test_stopping_at_the_first_clean_schedule_differs(case):
    # the cause, shown: without the fixed-point condition the two stop linearised at different points
    crit, full, gap = _both(case, fixed_point_rtol=None)
    assert len(crit.iterations) != len(full.iterations)
    assert gap > 0.5 and abs(crit.clearing.objective_usd - full.clearing.objective_usd) > 0.05
