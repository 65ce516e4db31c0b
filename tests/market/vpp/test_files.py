"""The VPP's files: curves.json reads back to the same curves, the curve table, a portfolio document
round trip, and the generated default portfolio with the shipped contracts."""
from __future__ import annotations

import json

import pytest

from market.vpp.defaults import default_contracts, default_portfolio
from market.vpp.files import curve_rows, portfolio_dict, read_curves, write_curves
from market.vpp.portfolio import Portfolio, PortfolioError
from market.vpp.store import FakeYieldStore
from market.vpp.supply import SupplyError, build_supply
from market.vpp.yield_stats import YieldStats
from tests.market.vpp.cases import HOUR_MS, TIERS, portfolio, rows


def _curves():
    p = portfolio()
    stats = YieldStats(FakeYieldStore(), TIERS)
    for h in range(3):
        for loc in ("2.1", "3.1"):
            stats.ingest(rows(loc, h * HOUR_MS, 300, 1000, lambda i: (40 + (i // 60) * 10, 30, 10)))
    return p, build_supply(p, stats, [0, HOUR_MS, 2 * HOUR_MS], 1.0, 0.9, priority=[30, 90, 80])


def test_curves_round_trip(tmp_path):
    _, curves = _curves()
    back = read_curves(write_curves(curves, tmp_path / "curves.json"))
    assert back == curves
    table = curve_rows(curves)
    assert len(table) == sum(len(c.steps) for c in curves.curves.values())
    assert table[0][:4] == ["2.1", 0, 0, "green"]


def test_bad_curves_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"v": 1, "curves": [{}]}))
    with pytest.raises(SupplyError, match="bad.json"):
        read_curves(bad)


def test_portfolio_document_round_trip():
    p = portfolio()
    assert Portfolio.from_dict(portfolio_dict(p)).holdings() == p.holdings()


def test_default_portfolio_uses_the_shipped_contracts():
    p = default_portfolio({"671.1": (45.0, 45.0, 10.0), "675.3": (9.0, 0.0, 1.0)}, {"671.1": 20, "675.3": 4})
    terms = default_contracts()
    assert p.holding("671.1", "green").contract.compensation_usd_per_kwh == terms["green"]["compensation_usd_per_kwh"]
    assert p.holding("675.3", "yellow") is None                      # 0 kW: no holding
    assert p.kw("671.1") == pytest.approx(100.0)
    with pytest.raises(PortfolioError, match="3 tiers"):
        default_portfolio({"671.1": (1.0, 2.0)}, {"671.1": 1})
